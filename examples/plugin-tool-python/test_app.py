"""The tool's logic, natively: `make test` (bindings are generated first)."""

import unittest

from app import count


class CountTest(unittest.TestCase):
    def test_counts_lines_words_and_bytes(self):
        self.assertEqual(
            count("/p", "one two\nthree\n"),
            {"path": "/p", "lines": 2, "words": 3, "bytes": 14},
        )


if __name__ == "__main__":
    unittest.main()
