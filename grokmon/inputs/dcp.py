"""`torch.distributed.checkpoint` folders (what FSDP2 and torchtitan save): `*.distcp` data files and a
`.metadata` index, read with torch's own DCP loader in this one process, no process group needed.

torch's loader reads `.metadata` with plain `pickle` and non-tensor entries with `torch.load(weights_only=False)`;
grokmon does neither. It reads `.metadata` with an unpickler that knows only DCP's own metadata classes, asks the
loader for tensors (which torch reads with weights_only) and for the step, and reads that one non-tensor entry
with weights_only too.
"""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path

import torch

from ..errors import CheckpointError, first_line

METADATA_FILE = ".metadata"  # written last, once every rank's data file is complete
DATA_SUFFIX = ".distcp"

_DCP = "torch.distributed.checkpoint"
_METADATA_CLASSES = {
    *(f"{_DCP}.metadata.{name}" for name in ("Metadata", "TensorStorageMetadata", "BytesStorageMetadata",
                                             "ChunkStorageMetadata", "TensorProperties", "MetadataIndex",
                                             "StorageMeta", "_MEM_FORMAT_ENCODING")),
    f"{_DCP}.filesystem._StorageInfo", "torch.Size", "torch.serialization._get_layout",
    "pathlib.PosixPath", "pathlib.WindowsPath", "collections.OrderedDict",
}


def data_files(folder: Path) -> list[Path]:
    """The `*.distcp` files of a DCP folder (empty for any other folder)."""
    return sorted(folder.glob(f"*{DATA_SUFFIX}"))


class _MetadataUnpickler(pickle.Unpickler):
    """Rebuilds DCP's metadata classes, torch sizes and dtypes; refuses every other global."""

    def find_class(self, module: str, name: str):
        if f"{module}.{name}" in _METADATA_CLASSES or (
                module == "torch" and isinstance(getattr(torch, name, None), torch.dtype)):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"it names {module}.{name}, which DCP metadata never holds")


def read_metadata(folder: Path):
    """The folder's DCP `Metadata`, read without running code; CheckpointError when it is missing or foreign."""
    path = folder / METADATA_FILE
    if not path.is_file():
        raise CheckpointError(f"{folder}: a torch.distributed.checkpoint folder without {METADATA_FILE} (written "
                              "last): the save did not finish; save it again or delete the folder")
    try:
        with open(path, "rb") as handle:
            return _MetadataUnpickler(handle).load()
    except Exception as exc:  # truncated, corrupt, or a pickle that asks for other objects
        raise CheckpointError(f"{path}: not readable DCP metadata ({first_line(exc)}); save the checkpoint "
                              "again") from exc


def tensor_tree(metadata) -> dict:
    """The checkpoint's tensors as meta tensors (shapes and dtypes, no data), nested as they were saved:
    `{"model": {"0.weight": ...}, "optim": {...}}`. Each leaf's `dcp_key` attribute is its key in the files."""
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata

    paths = metadata.planner_data if isinstance(metadata.planner_data, dict) else {}
    tree: dict = {}
    for key, item in metadata.state_dict_metadata.items():
        if not isinstance(item, TensorStorageMetadata):
            continue
        leaf = torch.empty(item.size, dtype=item.properties.dtype, device="meta")
        leaf.dcp_key = key
        *parents, last = paths.get(key, (key,))
        node = tree
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = leaf
    return tree


def load_entries(folder: Path, metadata, wanted: dict[str, torch.Tensor | None]) -> dict:
    """Read `wanted` entries (file key -> a tensor of the right shape to fill, or None for a non-tensor value)
    with torch's DCP loader, in this process."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint import DefaultLoadPlanner, FileSystemReader

    class Reader(FileSystemReader):
        def read_metadata(self, *args, **kwargs):
            metadata.storage_meta.load_id = self.load_id  # what torch's own reader does after unpickling
            return metadata

    class Planner(DefaultLoadPlanner):
        def load_bytes(self, read_item, value) -> None:
            self.state_dict[read_item.dest_index.fqn] = torch.load(value, map_location="cpu", weights_only=True)

    entries = dict(wanted)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "assuming the intent is to load in a single process": it is
            dcp.load(entries, storage_reader=Reader(str(folder)), no_dist=True,
                     planner=Planner(flatten_state_dict=False, flatten_sharded_tensors=False))  # keys as in the files
    except Exception as exc:  # a missing or truncated data file, an entry that needs code
        raise CheckpointError(f"{folder}: cannot read this torch.distributed.checkpoint ({first_line(exc)}); it "
                              "may be incomplete or corrupt, save it again") from exc
    return entries


def stored_step(folder: Path) -> int | None:
    """A top-level `step` or `global_step` entry of a DCP checkpoint (a number or a one-element tensor), else None."""
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata

    metadata = read_metadata(folder)
    for key in ("global_step", "step"):
        item = metadata.state_dict_metadata.get(key)
        if item is None:
            continue
        target = torch.empty(item.size, dtype=item.properties.dtype) if isinstance(item, TensorStorageMetadata) \
            else None
        value = load_entries(folder, metadata, {key: target})[key]
        if isinstance(value, int) or (isinstance(value, torch.Tensor) and value.numel() == 1):
            return int(value)
    return None
