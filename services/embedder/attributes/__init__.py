"""Face attributes (soft biometrics) from the face embedding, and descriptions to attribute
evidence: what text-guided face recognition (TGFR) fuses with a poor face."""
