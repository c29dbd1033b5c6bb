"""Release packaging: the Helm chart's generated inputs and the plain manifests rendered from it."""
