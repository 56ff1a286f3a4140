"""Fan-out to BPPs that do not publish: targets, the signed discover, pending requests and circuits."""
