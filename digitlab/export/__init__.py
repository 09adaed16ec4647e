"""digitlab export: runs and their networks leave digitlab for other tools. Models go to ONNX (onnx_graph), to
safetensors under PyTorch's names with the Sequential that takes them (torch_names), and runs to TensorBoard event
files (tensorboard_events) and MLflow (mlflow_runs). The libraries are the optional `export` extra, imported only
inside the functions that use them; network.py describes a model once for the model formats, reading.py reads
the runs and says which cannot be exported, formats.py ties a format name to its module."""
