"""automodel.data.vlm: image-text conversations and the collates that batch them with a processor.

Datasets yield ``{"messages": conversation}`` with decoded images; a collate renders the
conversations with the processor's chat template, runs the processor on texts and images,
and adds pre-shifted ``labels`` (``labels[:, i]`` is the target of position ``i``, -100
except on assistant text). ``collate_for(processor)`` picks the collate.
"""

from automodel.data.vlm.chat import ImageTextChatDataset
from automodel.data.vlm.collate import TurnMarkerCollate, default_vlm_collate
from automodel.data.vlm.column_mapped import ColumnMappedImageTextDataset, make_cord_v2_dataset
from automodel.data.vlm.registry import VLM_COLLATES, collate_for, register_vlm_collate

__all__ = [
    "VLM_COLLATES",
    "ColumnMappedImageTextDataset",
    "ImageTextChatDataset",
    "TurnMarkerCollate",
    "collate_for",
    "default_vlm_collate",
    "make_cord_v2_dataset",
    "register_vlm_collate",
]
