//go:build !unix

package ikebench

import "time"

// processCPU is unknown here.
func processCPU() time.Duration { return 0 }
