"""Exact nearest-neighbour search: the top-k corpus rows of each query, streaming over the corpus in chunks."""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F

from automodel.training.errors import TrainingError

SIMILARITIES = ("cosine", "dot")


def _corpus_chunks(corpus: torch.Tensor | Iterable[torch.Tensor], chunk_size: int) -> Iterable[torch.Tensor]:
    """Yield ``[n, D]`` slices of at most ``chunk_size`` rows, in corpus order."""
    for part in [corpus] if isinstance(corpus, torch.Tensor) else corpus:
        yield from part.split(chunk_size)


@torch.no_grad()
def exact_top_k(
    query_embeddings: torch.Tensor,
    corpus_embeddings: torch.Tensor | Iterable[torch.Tensor],
    k: int,
    *,
    chunk_size: int = 65536,
    similarity: str = "cosine",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return each query's ``k`` most similar corpus rows: ``(scores [Q, k], indices [Q, k])``, best first.

    ``corpus_embeddings`` is one ``[N, D]`` tensor or an iterable of ``[n, D]`` chunk tensors (read
    once, e.g. embedded on the fly); indices are positions in the whole corpus either way. The
    corpus is scored ``chunk_size`` rows at a time on the queries' device, in their dtype, keeping a
    running top-k, so the ``[Q, N]`` score matrix never exists. ``similarity`` is ``"cosine"`` or
    ``"dot"``. ``k`` above the corpus size returns every row.
    """
    if similarity not in SIMILARITIES:
        raise TrainingError(f"similarity is {similarity!r}, but exact_top_k knows 'cosine' and 'dot'; use one of them.")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1 or chunk_size < 1:
        raise TrainingError(
            f"exact_top_k needs k >= 1 and chunk_size >= 1, got k={k!r} and chunk_size={chunk_size!r}; "
            "k is how many corpus rows to return per query."
        )
    if query_embeddings.dim() != 2:
        raise TrainingError(
            f"query embeddings must be 2-D [queries, dim], got shape {tuple(query_embeddings.shape)}; "
            "stack the queries' pooled vectors into one matrix."
        )
    queries = F.normalize(query_embeddings, dim=-1) if similarity == "cosine" else query_embeddings
    rows = queries.shape[0]
    best_scores = queries.new_empty(rows, 0)
    best_indices = torch.empty(rows, 0, dtype=torch.long, device=queries.device)
    offset = 0
    for chunk in _corpus_chunks(corpus_embeddings, chunk_size):
        if chunk.dim() != 2 or chunk.shape[1] != queries.shape[1]:
            raise TrainingError(
                f"corpus embeddings of shape {tuple(chunk.shape)} do not fit queries of dim {queries.shape[1]}; "
                "embed the corpus with the same model and pooling as the queries."
            )
        chunk = chunk.to(device=queries.device, dtype=queries.dtype)
        if similarity == "cosine":
            chunk = F.normalize(chunk, dim=-1)
        scores = torch.cat([best_scores, queries @ chunk.T], dim=1)
        indices = torch.arange(offset, offset + chunk.shape[0], device=queries.device).expand(rows, -1)
        best_scores, top = scores.topk(min(k, scores.shape[1]), dim=1)
        best_indices = torch.cat([best_indices, indices], dim=1).gather(1, top)
        offset += chunk.shape[0]
    return best_scores, best_indices
