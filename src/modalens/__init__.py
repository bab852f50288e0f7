"""modalens: an open, reproducible fashion vision-language system.

Layout (one concern per subpackage):
    catalog     products, catalogue readers, safe image decoding
    encoders    pretrained image/text towers behind a registry
    models      the dual encoder (towers + projection heads), configs and factory
    losses      contrastive objectives
    prompts     caption and zero-shot prompt templates
    recipes     training recipes (one per paper) on the shared parts
    evaluation  retrieval and zero-shot metrics
    index       the embedded on-disk catalogue index
    cli         the `modalens` command
"""

__version__ = "0.1.0"
