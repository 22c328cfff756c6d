"""automodel.data.retrieval: training rows, batches and evaluation sets for embedding and reranking models.

``RetrievalDataset`` reads (query, positive, negatives) rows in the shapes users have (pairs,
triplets, negative lists, corpus ids, BEIR queries + qrels); ``BiEncoderCollator`` and
``CrossEncoderCollator`` batch them; ``load_retrieval_eval_set`` reads a BEIR / MTEB folder
(``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``) and ``iter_corpus`` streams a corpus.
"""

from automodel.data.retrieval.beir import (
    RetrievalEvalSet,
    corpus_size,
    iter_corpus,
    load_corpus,
    load_qrels,
    load_queries,
    load_retrieval_eval_set,
)
from automodel.data.retrieval.collate import BiEncoderCollator, CrossEncoderCollator, group_passages
from automodel.data.retrieval.training_rows import RetrievalDataset

__all__ = [
    "BiEncoderCollator",
    "CrossEncoderCollator",
    "RetrievalDataset",
    "RetrievalEvalSet",
    "corpus_size",
    "group_passages",
    "iter_corpus",
    "load_corpus",
    "load_qrels",
    "load_queries",
    "load_retrieval_eval_set",
]
