# tissue module
