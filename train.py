"""Train softmax, escort and NeuRD policies: ``python train.py --policy escort --env FourRooms-v0``.

``python train.py --help`` lists the flags; the logic lives in ``experiments`` so that it can be imported and tested.
"""

import sys

from experiments.cli import main

if __name__ == "__main__":
    sys.exit(main())
