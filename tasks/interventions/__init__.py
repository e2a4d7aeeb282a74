"""Interventions on the attention: does changing what the model attends to change its output?

Each intervention replaces attention probabilities inside the forward pass, never the input, and
measures the change of the output distribution (``mechanism``: TVD and decision flips):

- ``permutation`` (Jain & Wallace 2019): permuted attention rows;
- ``uniform`` (Wiegreffe & Pinter 2019): uniform attention in a layer or in all layers;
- ``erasure`` (Serrano & Smith 2019): erasing the most-attended key versus a random key;
- ``adversarial`` (Jain & Wallace 2019): maximally different attention with the output within ε;
- ``head_masking`` (Michel et al. 2019): one head removed.

``registry`` lists them (``INTERVENTIONS``). See docs/methodology.md, "Interventions".
"""
