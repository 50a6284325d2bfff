package esptun

import (
	"bufio"
	"os"
	"strings"
)

// KernelESP reports whether the running kernel has ESP (esp4 built in or
// loaded), which an XFRM data plane needs.
func KernelESP() bool {
	if _, err := os.Stat("/sys/module/esp4"); err == nil {
		return true
	}
	f, err := os.Open("/proc/kallsyms")
	if err != nil {
		return false
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if strings.HasSuffix(s.Text(), " esp_output") || strings.Contains(s.Text(), " esp_output\t") {
			return true
		}
	}
	return false
}
