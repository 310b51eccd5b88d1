"""Open-set score calibration of a face encoder, offline: embed a labelled face set under
several degradations (``dataset``), measure genuine and impostor score distributions per
face-quality band and fit the impostor tail (``fit``), and write them into the model's card
(``python -m facesearch_server.embedder.calibration``). Serving only reads the card."""
