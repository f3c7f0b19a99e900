"""Neural building blocks shared by the sequence models (``seqrec``, ``sid``)."""
