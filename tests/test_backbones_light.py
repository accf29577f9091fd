"""Reading what the dashboard needs about a built-in backbone costs no TensorFlow import."""

import subprocess
import sys


def test_block_table_of_a_built_builtin_does_not_import_tensorflow(lite0_handle):
    code = (
        "import sys; from pipelines.backbones import block_table; "
        "from pipelines.backbones.blocks import freeze_report; "
        "r = freeze_report(block_table('efficientnet_lite0'), 2); "
        "assert r['block_count'] == 18 and r['trainable_params'] > 0; "
        "print('tensorflow' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr[-2000:]
