"""Open a finished sweep's TensorBoard HParams page (and optuna-dashboard, for searches) in headless Chromium,
check the swept keys are ticked and the study is listed, save screenshots (see delo.tools.viewcheck):
python launch/check_views.py SWEEP_DIR. Needs Chromium and the [views] extra (playwright).
"""

import sys

from delo.tools.viewcheck import main

if __name__ == "__main__":
    sys.exit(main())
