"""``python -m skiic``: the demo, or ``python -m skiic cluster DATA ...``.

Without a command, clusters scikit-learn's bundled digits with IICClustering
and KMeans side by side and prints wall time, NMI and matched accuracy
(nothing is downloaded). ``python -m skiic --help`` lists the commands.
"""

import sys

from ._cli import demo, main

__all__ = ["demo", "main"]

if __name__ == "__main__":
    sys.exit(main())
