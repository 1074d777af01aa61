// Command sleeper is the whole of the test image (FROM scratch): it waits
// for SIGTERM or SIGINT and exits 0, so that containers stop at once.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGTERM, syscall.SIGINT)
	<-c
}
