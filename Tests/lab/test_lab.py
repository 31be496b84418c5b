"""Lab tests: the seed scenario end to end, in network namespaces these tests create.

Run as root (./scripts/test does, after the Swift suites): `python3 -m unittest -v Tests/lab/test_lab.py`.
JUMPGATE_BIN names the directory of the release binaries (./scripts/test sets it).
Each step asserts what a person following the seed would check, plus a positive control for every
negative proof (a blocked path is shown blocked only next to the same path working from inside).
"""

import os
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
import lab  # noqa: E402


class SeedScenario(unittest.TestCase):
    walk: dict = {}

    @classmethod
    def setUpClass(cls):
        if os.geteuid() != 0:
            raise unittest.SkipTest("the lab needs root (CI runs as root)")
        lab.down(quiet=True)
        cls.values = lab.up()
        cls.walk = lab.walkthrough()

    @classmethod
    def tearDownClass(cls):
        if os.geteuid() == 0:
            lab.down(quiet=True)

    def test_a_lab_outputs_are_what_the_seed_needs(self):
        for key in ("JUMPGATE_ENDPOINT", "AWS_CA_BUNDLE", "JUMP_SERVER_INSTANCE_ID", "RDS_ENDPOINT", "DB_USER", "DB_PASSWORD",
                    "SQS_QUEUE_URL"):
            self.assertTrue(self.values.get(key), key)
        self.assertRegex(self.values["JUMP_SERVER_INSTANCE_ID"], r"^mi-[0-9a-f]{17}$")
        self.assertTrue(self.values["SQS_QUEUE_URL"].startswith("https://sqs.us-east-1.amazonaws.com/"))
        self.assertEqual(oct(os.stat(lab.lab_dir().env).st_mode & 0o777), "0o600")

    def test_b_mysql_through_aws_cli_session(self):
        self.assertEqual(self.walk["mysql_rows"], ["Olá do laptop"])

    def test_c_sqs_round_trip_through_aws_cli_session(self):
        self.assertEqual(self.walk["sqs_body"], "Olá mundo!")

    def test_d_sessions_listed_then_terminated_by_ctrl_c(self):
        ids = self.walk["session_ids"]
        self.assertEqual(len(ids), 2)
        for sid in ids:
            self.assertIn(sid, self.walk["sessions_listed"])
            self.assertEqual(self.walk["history"].get(sid), "Terminated")
        self.assertEqual(self.walk["exit_codes"], [0, 0])

    def test_e_names_resolve_inside_the_vpc_only(self):
        proofs = self.walk["proofs"]
        self.assertEqual(proofs["database"]["resolved_on_host"], [])
        self.assertEqual(proofs["database"]["resolved_inside"], lab.DB_IP)  # positive control
        self.assertNotIn(lab.SQS_IP, proofs["queue endpoint"]["resolved_on_host"])
        self.assertEqual(proofs["queue endpoint"]["resolved_inside"], lab.SQS_IP)

    def test_f_private_addresses_unreachable_from_outside(self):
        proofs = self.walk["proofs"]
        for label in ("database", "queue endpoint"):
            self.assertFalse(proofs[label]["host_reaches"], label)
            self.assertTrue(proofs[label]["jump_reaches"], label)  # positive control

    def test_g_jump_server_listens_on_nothing_and_dials_only_the_gateway(self):
        proofs = self.walk["proofs"]
        self.assertEqual(proofs["jump_listening"], [])
        self.assertTrue(proofs["db_listening"])  # positive control: ss does see listeners
        self.assertEqual(proofs["jump_peers"], [proofs["gateway_peer"]])
        self.assertTrue(proofs["jump_reaches_gateway"])
        self.assertFalse(proofs["jump_reaches_outside_other_port"])

    def test_h_jumpgate_forward_carries_both_ports_in_one_command(self):
        ready = self.walk["forward_ready"]
        self.assertEqual(sorted(r["localPort"] for r in ready), [1213, 1313])
        self.assertEqual(len({r["sessionId"] for r in ready}), 2)
        self.assertEqual(self.walk["forward_mysql_rows"], ["Olá do laptop", "Olá de novo"])
        self.assertEqual(self.walk["forward_sqs_body"], "Olá de novo, mundo!")
        self.assertEqual(self.walk["forward_exit"], 0)

    def test_i_database_refuses_everyone_but_the_jump_server(self):
        # The security group: the queue endpoint host is inside the VPC but is not the jump server.
        self.assertFalse(lab.ns_tcp_connects(lab.NS_SQS, lab.DB_IP, 3306))
        self.assertTrue(lab.ns_tcp_connects(lab.NS_JUMP, lab.DB_IP, 3306))

    def test_k_a_destination_outside_the_policy_is_refused_at_once(self):
        refused = self.walk["refused"]
        self.assertNotEqual(refused["exit"], 0)
        self.assertIn("AccessDeniedException", refused["stderr"])
        self.assertIn("user/engineer", refused["stderr"])
        starts = self.walk["audit"]["engineer_starts"]
        denied = [r for r in starts if r.get("errorCode") == "AccessDeniedException"]
        self.assertEqual(len(denied), 1)
        self.assertEqual(denied[0]["requestParameters"]["Parameters"]["portNumber"], ["22"])
        allowed = [r for r in starts if r.get("errorCode") is None]
        self.assertGreaterEqual(len(allowed), 2)  # positive control: the seed's two sessions went through

    def test_l_the_session_audit_shows_its_connections(self):
        audit = self.walk["audit"]
        names = [r["eventName"] for r in audit["session"]]
        self.assertEqual(names[0], "StartSession")
        # Ctrl+C: the client's TerminateSession flag ends the session, and its TerminateSession call, which it
        # waits for before it exits, is recorded too, before or after the end.
        self.assertEqual(names.count("SessionEnded"), 1)
        self.assertIn("TerminateSession", names)
        self.assertIn(names[-1], ("SessionEnded", "TerminateSession"))
        self.assertIn("ConnectionOpened", names)
        closed = [r["serviceEventDetails"] for r in audit["session"] if r["eventName"] == "ConnectionClosed"]
        self.assertTrue(closed)
        for record in closed:
            self.assertEqual(record["destination"], f"{lab.DB_HOSTNAME}:3306")
            self.assertEqual(record["address"], f"{lab.DB_IP}:3306")  # the address the agent dialled
            self.assertGreater(record["bytesToTarget"], 0)
            self.assertGreater(record["bytesFromTarget"], 0)
        self.assertTrue(all(r["userIdentity"]["userName"] == "engineer" for r in audit["session"]))
        self.assertEqual(audit["verify_exit"], 0)
        self.assertIn("intact", audit["verify"])

    def test_m_a_mysql_connection_survives_a_gateway_restart_and_a_link_cut(self):
        continuity = lab.mysql_continuity()
        self.assertTrue(continuity["id_before"].isdigit(), continuity)
        self.assertLess(continuity["gateway_stop_seconds"], 10)  # SIGTERM stopped it; no SIGKILL was needed
        self.assertEqual(continuity["id_after_restart"], continuity["id_before"])
        self.assertEqual(continuity["id_after_cut"], continuity["id_before"])
        self.assertEqual(continuity["committed"], "1")  # the transaction opened before both commits
        self.assertEqual(continuity["seen_elsewhere"], [continuity["marker"]])
        self.assertEqual(continuity["shell_exit"], 0)
        self.assertEqual(continuity["forward_exit"], 0)
        self.assertTrue(lab.healthy(lab.lab_dir()))  # the restarted gateway is the lab's gateway now

    def test_n_ssh_and_scp_through_an_sshd_on_the_jump_servers_loopback(self):
        ssh = lab.ssh_over_session()
        print(f"ssh over a session: seed {ssh['seed']}, scp {ssh['scp_seconds']} s", flush=True)
        # sshd listens on the jump server's loopback only: nothing in the VPC or outside reaches it.
        self.assertEqual([line.split()[3] for line in ssh["listening"]], ["127.0.0.1:22"])
        self.assertFalse(ssh["reachable_from_vpc"])
        self.assertFalse(ssh["reachable_from_outside"])
        self.assertTrue(ssh["reachable_on_loopback"])  # positive control
        self.assertEqual(ssh["ssh_exit"], 0)
        self.assertEqual(ssh["ssh_output"], f"ssh-42 on {os.uname().nodename}")
        self.assertEqual(ssh["scp_exits"], [0, 0])
        self.assertTrue(ssh["copied_intact"])
        self.assertTrue(ssh["back_intact"])

    def test_j_second_up_is_harmless(self):
        again = lab.up()
        self.assertEqual(again["JUMP_SERVER_INSTANCE_ID"], self.values["JUMP_SERVER_INSTANCE_ID"])
        self.assertTrue(lab.healthy(lab.lab_dir()))

    def test_z_down_removes_everything(self):
        pids = list(lab.load_state(lab.lab_dir()).get("pids", {}).values())
        self.assertEqual(len(pids), 4)
        lab.down(quiet=True)
        self.assertEqual(lab.leftovers(), [])
        self.assertFalse([pid for pid in pids if lab.alive(pid)])
        tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
        self.assertNotIn(lab.PREFIX, tables)


class FailedSetUp(unittest.TestCase):
    def test_failed_up_leaves_nothing_behind(self):
        if os.geteuid() != 0:
            self.skipTest("the lab needs root (CI runs as root)")
        # A "jumpgate" that fails at once: the network, the database and the queue endpoint are up by
        # the time the gateway step fails, so teardown has everything to remove.
        with tempfile.TemporaryDirectory() as bin_dir:
            fake = Path(bin_dir) / "jumpgate"
            fake.write_text("#!/bin/sh\necho 'cannot start: simulated failure' >&2\nexit 3\n")
            fake.chmod(0o755)
            with self.assertRaises(lab.LabError) as raised:
                lab.up(Path(bin_dir))
        self.assertIn("the gateway exited with status 3", str(raised.exception))
        self.assertIn("simulated failure", str(raised.exception))
        self.assertEqual(lab.leftovers(), [])
        self.assertNotIn(lab.PREFIX, subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout)


if __name__ == "__main__":
    unittest.main(verbosity=2)
