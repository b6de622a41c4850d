"""herdcount's Keras module: model builders, training targets, the training data and the trainer.

Installed as ``herdcount.models`` (setup.py maps this folder there); it needs the ``train``
extra's TensorFlow and Keras, which counting does not.
"""
