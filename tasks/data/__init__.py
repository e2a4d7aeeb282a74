"""Load -> the corpus, encoded: corpora, encoding, human rationales and the units metrics rank."""
