"""fzplus: the F/Z+ GAN-inversion latent-space benchmark suite.

Data flow, one subpackage per stage: generator -> spaces (top-level plugin package) -> inversion ->
edits -> metrics / statistics / report (top-level `benchmarks` package).
"""

__version__ = "0.1.0"

from fzplus.compat import install_torchvision_fallbacks

# lpips and facenet-pytorch import torchvision; on CPU-only torch that import needs the fallback NMS,
# which has to be registered before torchvision is first imported (a no-op where its ops load).
install_torchvision_fallbacks()
