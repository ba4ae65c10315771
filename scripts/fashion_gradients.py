"""Write results/images/fashion-vae-gradients-8x4.csv: the ELBO-gradient accuracy rows of the committed
fashion-vae sweeps (configs/fashion-vae.toml, fashion-vae-gradients.toml and fashion-vae-gradients-newer.toml),
one row per estimator, seed and checkpoint:

    python scripts/fashion_gradients.py

Each value is the mean over the probed test images (gumbench.benchmarks.sweep.config.GRADIENT_POINTS)
of the estimator's relative bias, relative standard deviation and cosine against the enumerated gradient.
scripts/write_docs.py checks that the file equals the run's rows.
"""

from docgen.common import ROOT
from docgen.fashion import fashion_gradient_rows
from gumbench.files import write_csv

if __name__ == "__main__":
    grads = fashion_gradient_rows(ROOT)
    columns = ["elbo_gradient_relative_bias", "elbo_gradient_relative_std", "elbo_gradient_cosine"]
    frame = grads[["label", "seed", "step", *columns]].sort_values(["label", "step", "seed"]).reset_index(drop=True)
    path = ROOT / "results" / "images" / "fashion-vae-gradients-8x4.csv"
    write_csv(frame, path)
    print(path)
