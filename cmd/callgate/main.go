// Command callgate is the gateway (`callgate serve`) and its operator CLI.
package main

import (
	"fmt"
	"os"
)

const usage = `callgate: telephony edge gateway for voice-AI agents

Usage:
  callgate serve [--config FILE]        run the gateway (see: callgate serve --help)
  callgate numbers search|buy|list|show|assign|release ...
  callgate agents create|list|delete ...
  callgate forwarding add|list|delete ...
  callgate credits [topup WORKSPACE AMOUNT]
  callgate workspaces create ID [--credits N]
  callgate regions
  callgate dev fake-carrier               local Twilio/Telnyx API simulators (demo accounts)
  callgate version

CLI commands talk to the API: --api URL (default http://127.0.0.1:8080,
env CALLGATE_API), --key KEY (env CALLGATE_API_KEY, else the data dir's
api-key file; --data-dir or CALLGATE_DATA_DIR), --json for scripts.
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "serve":
		err = serve(os.Args[2:])
	case "numbers", "agents", "credits", "regions", "forwarding", "workspaces":
		err = cli(os.Args[1], os.Args[2:], os.Stdin, os.Stdout)
	case "dev":
		err = dev(os.Args[2:])
	case "version", "--version":
		fmt.Println(versionString())
	case "help", "-h", "--help":
		fmt.Print(usage)
	default:
		fmt.Fprintf(os.Stderr, "callgate: unknown command %q\n\n%s", os.Args[1], usage)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "callgate:", err)
		os.Exit(1)
	}
}
