"""Hub credentials in loader keyword arguments: passed to the hub call as ``token=``, never kept by the object.

transformers keeps unknown keyword arguments of ``from_pretrained``: a tokenizer stores
them in ``init_kwargs`` (written to ``tokenizer_config.json``) and treats any name ending in
``_token`` as a special token (written to ``tokenizer.json``); a model sets them on its
config (written to ``config.json``). A credential passed that way would be saved in every
checkpoint. ``hub_kwargs`` takes the hub token out under its one name, ``token``, which
transformers hands to huggingface_hub only, and refuses other credentials.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from automodel.models.errors import ModelError

HUB_TOKEN = "token"
HUB_TOKEN_ALIASES = ("hf_token", "hub_token", "use_auth_token", "huggingface_token")
_CREDENTIAL = re.compile(r"(^|_)(api_?key|password|passwd|secret|secret_key|access_key|private_key|credentials?)$")


def hub_kwargs(kwargs: Mapping[str, Any], what: str) -> dict[str, Any]:
    """Return ``from_pretrained`` keyword arguments with the hub token under ``token`` and no other credential.

    Args:
        kwargs: the keyword arguments a user gave a loader (from YAML or Python).
        what: what is being loaded, for the message (``tokenizer``, ``model``, ``processor``).

    Returns:
        A new dict: ``hf_token``, ``hub_token``, ``use_auth_token`` and ``huggingface_token`` are
        renamed ``token`` (an empty or null token is dropped, so huggingface_hub falls back to
        ``HF_TOKEN`` or the cached login); everything else is kept.

    Raises:
        ModelError: for two spellings of the hub token at once, or a keyword that looks like
            another credential (``api_key``, ``password``, ``aws_secret_key``): transformers
            would save it in the model folder.
    """
    result = dict(kwargs)
    given = [name for name in (HUB_TOKEN, *HUB_TOKEN_ALIASES) if name in result]
    if len(given) > 1:
        raise ModelError(f"the {what} is given a hub token twice ({', '.join(given)}); keep only `{HUB_TOKEN}`")
    for name in given:
        value = result.pop(name)
        if value not in (None, "", True):
            result[HUB_TOKEN] = value
    check_no_credentials([name for name in result if name != HUB_TOKEN], what)
    return result


def check_no_credentials(names: Iterable[str], what: str) -> None:
    """Raise ModelError when one of ``names`` (keyword arguments or config fields) looks like a credential.

    Args:
        names: the names to check (``api_key``, ``password``, ``hf_token``, ``aws_secret_key`` are credentials;
            ``pad_token`` and ``num_key_value_heads`` are not).
        what: what receives them, for the message (``tokenizer``, ``model``, ``model config``).
    """
    for name in names:
        lowered = str(name).lower()
        if lowered in (HUB_TOKEN, *HUB_TOKEN_ALIASES) or _CREDENTIAL.search(lowered):
            raise ModelError(
                f"the {what} is given `{name}`, which looks like a credential; transformers would keep it and "
                f"automodel would save it with every checkpoint. The one credential automodel passes on is the "
                f"hub token, as `{HUB_TOKEN}` of a from_pretrained loader (e.g. `{HUB_TOKEN}: ${{env:HF_TOKEN}}`, "
                "or HF_TOKEN in the environment), and it goes to the hub download only"
            )
