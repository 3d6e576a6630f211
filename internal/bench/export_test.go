package bench

// ParseBenchmarkCSV is parseBenchmarkCSV, for the external tests.
var ParseBenchmarkCSV = parseBenchmarkCSV
