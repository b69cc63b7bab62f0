"""genomelab: train and audit genomics deep-learning models.

Subpackages: ``train`` (the shared training engine), ``diagnostics`` (checks that run
before and during training), ``io`` (readers and atomic writers), ``report`` and one
subpackage per scientific module (``tissue``, ``deconv``, ``regulon``, ``assoc``,
``binning``). Shared pieces never import a module.
"""

__version__ = "0.1.0"
