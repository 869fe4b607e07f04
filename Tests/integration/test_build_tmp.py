"""Building leaves nothing behind in the temporary directory.

The Swift driver leaves empty TemporaryDirectory.* in $TMPDIR, and SwiftPM its lock files,
never removed (swiftlang/swift-driver#2049): 6 for each swift build, 5 for swift test. So
whatever runs swift in the checkout (the Makefile, test.sh, run.sh) gives it a TMPDIR of
the checkout's own, .build-tmp. Each check builds what test.sh has built already: nothing
is compiled.
"""
import os
import re
import subprocess
import tempfile
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class BuildTmp(unittest.TestCase):
    def build_in(self, command, tmp):
        result = subprocess.run(command, cwd=ROOT, env=dict(os.environ, TMPDIR=tmp), capture_output=True,
                                text=True, timeout=600)
        self.assertEqual(result.returncode, 0, result.stderr[-2000:])

    def test_make_build_leaves_nothing_in_tmpdir(self):
        with tempfile.TemporaryDirectory() as tmp:
            self.build_in(["make", "-s", "build"], tmp)
            self.assertEqual(os.listdir(tmp), [])

    def test_the_scripts_swift_leaves_nothing_in_tmpdir(self):
        for script in ("test.sh", "run.sh"):
            with open(os.path.join(ROOT, script)) as f:
                wrapper = re.search(r"^swift\(\) \{.*\}$", f.read(), re.M)
            self.assertIsNotNone(wrapper, "%s defines no swift()" % script)
            with self.subTest(script=script), tempfile.TemporaryDirectory() as tmp:
                self.build_in(["sh", "-c", wrapper.group(0) + "\nswift build --build-tests"], tmp)
                self.assertEqual(os.listdir(tmp), [])


if __name__ == "__main__":
    unittest.main()
