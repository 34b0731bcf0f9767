"""The text: reading and cleaning the corpus, the vocabulary, batches, rhyme."""
