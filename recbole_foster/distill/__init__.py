"""FOSTER distillation: synthetic summary, item sampling, BOME loop, anchors, DH, evaluation."""
