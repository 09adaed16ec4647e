"""Looking inside a network, as the teaching tools do (TensorFlow Playground, ConvNetJS, CNN Explainer, fastai's
interpretation): what each layer computes for a probe batch (probe), its health (health), the 2-D plane of a
network with a 2-unit layer (plane), which pixels move the predicted score (saliency), and the figures that draw
them (figures). Numbers come from evaluation-mode passes: they never touch training's random draws or batch
statistics."""
