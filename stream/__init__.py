"""finsent stream worker (Faust): score and detect agents, topics, records."""
