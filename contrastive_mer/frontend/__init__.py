"""MLLM front end: token sources from the pretrained encoders, projectors into an LLM's hidden size, prompt
placeholder splicing, save/load with the encoder checkpoint's SHA-256, and HDF5 / MER-style ``.npy`` export.

Typical use::

    front = FrontEnd.from_checkpoint("last.ckpt", FrontEndConfig(llm_hidden=llm.config.hidden_size))
    tokens = front(batch)                                   # source -> SoftTokens
    spliced = front.splicer(tokenizer, llm)("<audio> <video> What emotion?", tokens, targets=["happy"])
    loss = llm(**spliced.model_inputs()).loss
"""

from contrastive_mer.frontend.config import FUSED, FrontEndConfig
from contrastive_mer.frontend.export import TokenWriter, export_npy, write_tokens
from contrastive_mer.frontend.front_end import EncoderMismatchError, FrontEnd
from contrastive_mer.frontend.projector import Resampler, TokenMapper, build_projector, segment_mean
from contrastive_mer.frontend.sources import SourceBatch, StoreSources, TokenSource, encode_sources, prepare_batch
from contrastive_mer.frontend.splice import IGNORE_INDEX, PromptSplicer, SoftTokens, SplicedBatch

__all__ = [
    "FUSED", "IGNORE_INDEX", "EncoderMismatchError", "FrontEnd", "FrontEndConfig", "PromptSplicer", "Resampler",
    "SoftTokens", "SourceBatch", "SplicedBatch", "StoreSources", "TokenMapper", "TokenSource", "TokenWriter",
    "build_projector", "encode_sources", "export_npy", "prepare_batch", "segment_mean", "write_tokens",
]
