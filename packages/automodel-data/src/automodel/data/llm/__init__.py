"""automodel.data.llm: text datasets whose items are ``input_ids`` and pre-shifted ``labels``.

``labels[i]`` is the token that should follow ``input_ids[: i + 1]`` (-100 where no loss is
taken), so the loss needs no shift and packed samples never share a target. Instruction
and chat items also carry ``prompt_length``.
"""

from automodel.data.llm.chat import ChatDataset
from automodel.data.llm.collate import default_collater, packed_collater
from automodel.data.llm.instruction import ColumnMappedTextInstructionDataset, format_prompt, make_squad_dataset
from automodel.data.llm.mock import MockDataset
from automodel.data.llm.packing import PackedDataset, pack_dataset
from automodel.data.llm.pretrain import PretrainTextDataset, StreamingPretrainTextDataset
from automodel.data.llm.samples import IGNORE_INDEX, TokenizedDataset

__all__ = [
    "IGNORE_INDEX",
    "ChatDataset",
    "ColumnMappedTextInstructionDataset",
    "MockDataset",
    "PackedDataset",
    "PretrainTextDataset",
    "StreamingPretrainTextDataset",
    "TokenizedDataset",
    "default_collater",
    "format_prompt",
    "make_squad_dataset",
    "pack_dataset",
    "packed_collater",
]
