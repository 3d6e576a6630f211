package bench

// ParseBenchmarkCSV is parseBenchmarkCSV, for the external tests.
var ParseBenchmarkCSV = parseBenchmarkCSV

// ParseInfoCPU is parseInfoCPU, for the external tests.
var ParseInfoCPU = parseInfoCPU

// Scheduled is scheduled, for the external tests.
var Scheduled = scheduled
