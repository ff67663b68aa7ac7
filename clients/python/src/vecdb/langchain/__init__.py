"""LangChain integration (install the extra: ``pip install "vecdb-client[langchain]"``).

- :class:`VecdbVectorStore`: a ``langchain_core`` ``VectorStore`` whose
  documents live in an indexing-service collection (text as ``content``,
  ``Document.metadata`` as the payload, ``Document.id`` as the point id).
- :class:`VecdbEmbeddings`: ``langchain_core`` ``Embeddings`` computed by
  the embedding service.
"""

from .embeddings import VecdbEmbeddings
from .vectorstores import VecdbVectorStore

__all__ = ["VecdbEmbeddings", "VecdbVectorStore"]
