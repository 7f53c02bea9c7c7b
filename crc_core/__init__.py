"""CRC-TIME core library: cohort tables, labels, imaging, training and evaluation.

Plain Python with no Streamlit dependency, so that the dashboard, the ``crc-time`` command and a
notebook all run the same code.
"""

__version__ = "0.1.0"

from crc_core import _compat

_compat.install()  # the flat module names of release 0.1 for one more release
