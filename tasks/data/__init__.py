"""Load -> the corpus, encoded: built-in corpora, corpora, encoding, human rationales and the units metrics rank."""
