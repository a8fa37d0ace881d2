"""Issue 11 fuzz: random bytes (not derived from a valid file) behind the PNG / JPEG signatures, or none,
for the label and image readers. Property: an array, or a SegunifyError naming the file; never another
exception type, and nothing printed by libpng / OpenCV (tests/test_labels.py mutates valid files)."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from segunify.errors import SegunifyError
from segunify.labels import read_image, read_label_raw

PREFIXES = [b"", b"\x89PNG\r\n\x1a\n", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", b"\xff\xd8\xff", b"GIF89a"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    prefix=st.sampled_from(PREFIXES),
    body=st.binary(max_size=120),
    reader=st.sampled_from([read_label_raw, read_image]),
    suffix=st.sampled_from([".png", ".jpg"]),
)
def test_fuzz_random_bytes_give_an_array_or_one_error(prefix, body, reader, suffix, tmp_path, capfd):
    path = tmp_path / f"fuzz{suffix}"
    path.write_bytes(prefix + body)
    capfd.readouterr()
    try:
        arr = reader(path)
    except SegunifyError as exc:
        assert exc.path == str(path) and "\n" not in str(exc)
    else:
        assert isinstance(arr, np.ndarray) and arr.size > 0
    if not prefix.startswith(b"\xff\xd8"):  # libjpeg may warn on a JPEG it still decodes: not an error
        assert capfd.readouterr().err == ""
