"""Files for TensorBoard's embedding projector from a feature store (what ``cmer project`` writes).

For each view (a store view name: a modality's features, ``projections/<m>``, ``fused/<mode>``) the usable rows
go to ``<out>/<view>/tensors.tsv`` (one row per clip, tab-separated, float32 values written so they read back
exactly) and ``<out>/<view>/metadata.tsv`` (a header, then per clip its id, every label as a class name or
number, and every group such as speaker). ``<out>/projector_config.pbtxt`` lists the views, so
``tensorboard --logdir <out>`` shows them in its Projector tab (PCA, t-SNE, UMAP, search by id or label).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

CONFIG = "projector_config.pbtxt"


@dataclass
class ProjectedView:
    """One view written: its canonical key, folder and number of rows."""

    key: str
    folder: Path
    rows: int


def _cell(value: Any) -> str:
    """A metadata cell: no tab or line break (they would split the TSV)."""
    return " ".join(str(value).split()) or "-"


def label_columns(store: Any) -> dict[str, list[str]]:
    """Every label of the store as text per row: a class name, ``-`` where missing, ``a|b`` for a multi-label
    row (names of the labels present), the number for a float label."""
    out: dict[str, list[str]] = {}
    for name in store.label_names():
        y, names = store.labels(name), store.class_names(name)
        if y.ndim == 2:
            names = names or [str(i) for i in range(y.shape[1])]
            out[name] = ["|".join(n for n, v in zip(names, row) if v > 0) or "-" for row in y]
        elif y.dtype.kind in "iub":
            out[name] = ["-" if v < 0 else (names[v] if names and v < len(names) else str(v)) for v in y.tolist()]
        else:
            out[name] = ["-" if not np.isfinite(v) else f"{v:g}" for v in y.tolist()]
    return out


def metadata_table(store: Any, rows: np.ndarray) -> list[list[str]]:
    """Header and one line per row: ``id``, the labels, the groups (each column name prefixed if it would
    repeat another)."""
    labels = label_columns(store)
    groups = {g: [str(v) for v in store.groups(g)] for g in store.group_names()}
    header = ["id", *labels, *(g if g not in labels and g != "id" else f"group_{g}" for g in groups)]
    ids = [str(i) for i in store.ids]
    columns = [ids, *labels.values(), *groups.values()]
    return [header] + [[_cell(col[r]) for col in columns] for r in rows.tolist()]


def _folder_name(key: str) -> str:
    return key.replace("/", "_")


def write_projector(store: Any, views: Sequence[str] | None, out_dir: str | Path,
                    max_rows: int | None = None) -> list[ProjectedView]:
    """Write the projector files of ``views`` (None: every modality's features and every fused mode) of an
    open store into ``out_dir``; ``max_rows`` keeps the first usable rows of each view. KeyError names an
    unknown view (with the store's views)."""
    from google.protobuf import text_format
    from tensorboard.plugins.projector.projector_config_pb2 import ProjectorConfig

    out = Path(out_dir)
    keys = list(dict.fromkeys(key for _, key in store.expand_views(views)))
    config = ProjectorConfig()
    written = []
    for key in keys:
        view = store.view(key)
        rows = view.rows if max_rows is None else view.rows[:max_rows]
        if len(rows) == 0:
            continue
        folder = out / _folder_name(key)
        folder.mkdir(parents=True, exist_ok=True)
        np.savetxt(folder / "tensors.tsv", np.asarray(view.vectors[rows], dtype=np.float32), fmt="%.9g",
                   delimiter="\t")
        (folder / "metadata.tsv").write_text("\n".join("\t".join(line) for line in metadata_table(store, rows))
                                             + "\n", encoding="utf-8")
        embedding = config.embeddings.add()
        embedding.tensor_name = key
        embedding.tensor_path = f"{folder.name}/tensors.tsv"
        embedding.metadata_path = f"{folder.name}/metadata.tsv"
        written.append(ProjectedView(key, folder, len(rows)))
    if not written:
        raise ValueError(f"no usable rows in the views {keys} of {store.path}")
    (out / CONFIG).write_text(text_format.MessageToString(config), encoding="utf-8")
    return written
