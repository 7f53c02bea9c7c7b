"""The one exception type for input a user can fix.

Programming errors stay ordinary exceptions; everything caused by a file, a table cell, a patient or
an option the user chose raises :class:`CrcInputError` with a message that names the culprit and
says what to do, so that pages can show it with ``st.error`` and the CLI can print it on one line.
"""


class CrcInputError(ValueError):
    """Bad input that the user can correct (a file, row, column, patient or option)."""
