"""Retrieval-augmented recommendation over the profile: the request, query encoder → FAISS retriever → reranker.

``rec_request`` parses and validates one request; ``query_encoder`` maps its text into item space;
``catalog_index`` holds one FAISS index per service; ``retriever`` gathers candidates and the user's relevant
profile fragments; ``reranker`` scores candidates with profile features.
"""
