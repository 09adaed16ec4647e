"""The from-scratch engine: layers, losses, optimizers, schedules, initialisers and stable functions, in numpy."""

from digitlab.nn.activations import LeakyReLU, ReLU, Sigmoid, Softmax, Tanh
from digitlab.nn.base import Layer, Parameter, WeightLayer
from digitlab.nn.conv import Conv2d
from digitlab.nn.layers import Dropout, Flatten, Linear
from digitlab.nn.losses import BCELoss, CrossEntropyLoss, Loss, MSELoss, predict_classes
from digitlab.nn.means import ClassMeans
from digitlab.nn.model import Parameters, Sequential, ShapeError
from digitlab.nn.normalization import BatchNorm
from digitlab.nn.optim import SGD, Adadelta, Adam, AdamW, Optimizer, RMSprop
from digitlab.nn.pooling import AvgPool2d, MaxPool2d
from digitlab.nn.registry import LAYERS, LOSSES, MODELS, OPTIMIZERS, SCHEDULES, architecture, build_layers, build_model

# The course's words for a linear layer.
Affine = Dense = Linear

__all__ = ["Adadelta", "Adam", "AdamW", "Affine", "AvgPool2d", "BatchNorm", "BCELoss", "ClassMeans", "Conv2d",
           "CrossEntropyLoss", "Dense", "Dropout", "Flatten", "Layer", "LeakyReLU", "Linear", "Loss", "MaxPool2d",
           "MSELoss", "Optimizer", "Parameter", "Parameters", "ReLU", "RMSprop", "SGD", "Sequential", "ShapeError",
           "Sigmoid", "Softmax", "Tanh", "WeightLayer", "LAYERS", "LOSSES", "MODELS", "OPTIMIZERS", "SCHEDULES",
           "architecture", "build_layers", "build_model", "predict_classes"]
