"""The from-scratch engine: layers, losses, optimizers, initialisers and stable functions, in numpy."""

from digitlab.nn.layers import (LAYERS, Affine, Dense, Dropout, Flatten, Layer, Linear, Parameter, ReLU,
                                Sigmoid, Softmax, Tanh)
from digitlab.nn.losses import LOSSES, BCELoss, CrossEntropyLoss, Loss, MSELoss, predict_classes
from digitlab.nn.model import Parameters, Sequential, ShapeError, build_model
from digitlab.nn.optim import OPTIMIZERS, SGD, Adam, Optimizer

__all__ = ["LAYERS", "Affine", "Dense", "Dropout", "Flatten", "Layer", "Linear", "Parameter", "ReLU", "Sigmoid",
           "Softmax", "Tanh", "LOSSES", "BCELoss", "CrossEntropyLoss", "Loss", "MSELoss", "predict_classes",
           "Parameters", "Sequential", "ShapeError", "build_model", "OPTIMIZERS", "SGD", "Adam", "Optimizer"]
