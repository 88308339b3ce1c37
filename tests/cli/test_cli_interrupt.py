"""Ctrl-C in ``multidraft generate`` keeps the streamed text, reports the completed steps and exits with 130."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

from tests.support.tiny_pair import WORDS, save_tiny_pair


def test_ctrl_c_keeps_the_text_and_reports_the_steps(tmp_path):
    # far more tokens than a run can make before the signal lands, even on a loaded machine (4,000 once finished first)
    target, draft = save_tiny_pair(tmp_path, max_positions=60_100)
    process = subprocess.Popen(
        [sys.executable, "-m", "multidraft.cli", "generate", "--target", target, "--draft", draft, "--scheme", "rrs",
         "--tree", "2x2", "--max-new-tokens", "60000", "--seed", "1", "the a of"],
        env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        # a test run started in the background inherits SIGINT ignored, and Python keeps it ignored: restore
        # the default, as in a terminal, so that Python installs its KeyboardInterrupt handler
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    streamed = process.stdout.read1(4096)  # blocks until the first tokens are printed
    process.send_signal(signal.SIGINT)
    rest, err = process.communicate(timeout=120)
    assert process.returncode == 130, err.decode()[-2000:]
    text = (streamed + rest).decode()
    assert streamed and text.startswith(streamed.decode())
    words = text.split()
    assert words and set(words) <= set(WORDS[1:])  # [UNK] is a special token: not printed
    report = err.decode().strip().splitlines()[-1]
    match = re.fullmatch(r"\[rrs 2x2 token\] interrupted after (\d+) tokens in (\d+) target calls: block efficiency "
                         r"([\d.]+), [\d.]+ tokens/s", report)
    assert match, report
    tokens, calls, efficiency = int(match[1]), int(match[2]), float(match[3])
    assert len(words) <= tokens < 60_000 and 1 <= calls <= tokens <= 3 * calls  # a 2x2 step emits 1 to 3 tokens
    assert efficiency == round(tokens / calls, 2)
