package proxy

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"syscall"
)

// The test binary doubles as a fake `rethinkdb proxy`: when FAKEPROXY is
// set, TestMain runs fakeMain instead of the tests. The fake prints the
// real proxy's log lines (wording from logs/proxy.log) and starts a helper
// shaped like rethinkdb's extproc spawner (src/extproc/extproc_spawner.cc in
// v2.4.4): in a process group of its own (setpgid(0, 0)), so the proxy's
// group signals miss it, holding the proxy's stdout, and exiting only when
// its socket to the proxy closes, however the proxy ended. It prints
// "spawner <pid>" (not a real log line) so that tests can find it. The fake
// behaves according to the mode:
//
//	ready       print the lines, exit 0 on SIGTERM
//	ignoreterm  like ready but ignore SIGTERM
//	exit        print an error before ready and exit 1
//	neverready  listen but never say ready
//	noports     say ready without the port lines
const fakeEnv = "FAKEPROXY"

const fakeID = "proxy-66d2e99c-0015-408e-8b4c-df0eef81f64e"

// fakePassword is what the fake "generates" for --initial-password auto.
const fakePassword = "6f1c2a3e-5b4d-4e6f-8a9b-0c1d2e3f4a5b"

func fakeMain(mode string) {
	if mode == "helper" {
		// Only the end of the socket ends it, as for the real spawner.
		signal.Ignore(syscall.SIGTERM)
		_, _ = io.Copy(io.Discard, os.NewFile(3, "socket"))
		os.Exit(0)
	}
	args := os.Args[1:]
	if len(args) == 0 || args[0] != "proxy" || !slices.Contains(args, "--join") {
		fmt.Println("Error in command line: Option '--join' must be specified.")
		os.Exit(1)
	}
	term := make(chan os.Signal, 1)
	if mode == "ignoreterm" {
		signal.Ignore(syscall.SIGTERM)
	} else {
		signal.Notify(term, syscall.SIGTERM)
	}
	sock, keep, err := os.Pipe()
	if err != nil {
		fmt.Println("socket:", err)
		os.Exit(2)
	}
	helper := exec.Command(os.Args[0], "proxy", "--join", "helper")
	helper.Env = append(os.Environ(), fakeEnv+"=helper")
	helper.Stdout, helper.Stderr = os.Stdout, os.Stderr
	helper.ExtraFiles = []*os.File{sock}
	helper.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := helper.Start(); err != nil {
		fmt.Println("fork helper:", err)
		os.Exit(2)
	}
	sock.Close()
	defer keep.Close() // held until this process exits, as rethinkdb holds its end
	fmt.Printf("spawner %d\n", helper.Process.Pid)

	// What parse_initial_password_option prints (printf, stdout) for
	// `--initial-password auto`, before anything else.
	if i := slices.Index(args, "--initial-password"); i >= 0 && i+1 < len(args) && args[i+1] == "auto" {
		fmt.Println("Generated random admin password: " + fakePassword)
	}
	fmt.Println("Listening for intracluster connections on port 40747")
	if mode == "exit" {
		fmt.Fprintln(os.Stderr, "Error: boom, cannot join")
		os.Exit(1)
	}
	fmt.Println(`Connected to server "server_3" 01c87574-ce6d-4611-8aaf-6286633dd822`)
	if mode != "noports" {
		fmt.Println("Listening for client driver connections on port 41235")
	}
	fmt.Println("Listening on cluster addresses: 127.0.0.1, ::1")
	fmt.Println("Listening on driver addresses: 127.0.0.1, ::1")
	fmt.Println("To fully expose RethinkDB on the network, bind to all addresses by running rethinkdb with the `--bind all` command line option.")
	if mode != "neverready" {
		fmt.Println("Proxy ready, " + fakeID)
	}
	<-term
	fmt.Println("Server got SIGTERM from pid 16054, uid 0; shutting down...")
	fmt.Println("Shutting down client connections...")
	os.Exit(0)
}
