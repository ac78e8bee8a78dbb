package main

import "github.com/spf13/cobra"

// callsCommand groups the call commands (placing; history lists in its
// own file when present).
func (a *app) callsCommand() *cobra.Command {
	return a.group("calls", "Place calls", a.callsPlace())
}
