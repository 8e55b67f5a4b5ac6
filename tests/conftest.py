"""What every test process shares.

torchvision imported after TensorFlow crashes the process: torchvision pulls in triton (through
torch._dynamo), whose import segfaults once TensorFlow's libraries are loaded (`python -c
"import tensorflow; import torchvision"` exits 139 here; the other order works). Only a test
process holds both stacks, the Keras and TensorFlow import tests beside the torch ones, so it
loads torchvision first, whichever tests run and in whatever order.
"""

import importlib.util

if importlib.util.find_spec("tensorflow") and importlib.util.find_spec("torchvision"):
    import torchvision  # noqa: F401
