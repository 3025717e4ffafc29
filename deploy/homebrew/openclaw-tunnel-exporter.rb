# Homebrew formula: builds openclaw-tunnel-exporter from source with cargo.
#
# scripts/release.sh fills in the source tarball's URL and SHA-256 (the @...@ fields) and writes the finished
# formula beside the archives it builds, so the formula always pins the tarball it was made with:
#   scripts/release.sh --base-url https://example.com/releases/v0.1.0
#   brew install --formula target/dist/openclaw-tunnel-exporter.rb
#   brew services start openclaw-tunnel-exporter      # the laptop's exporter as a LaunchAgent
class OpenclawTunnelExporter < Formula
  desc "Prometheus exporter for an OpenClaw gateway reached through an ssh -L forward"
  url "@SOURCE_URL@"
  version "@VERSION@"
  sha256 "@SOURCE_SHA256@"
  license "Apache-2.0"

  depends_on "rust" => :build

  def install
    system "cargo", "install", *std_cargo_args(path: "exporter")
    pkgshare.install "deploy"
  end

  def post_install
    (etc/"openclaw-tunnel-exporter").mkpath
    config = etc/"openclaw-tunnel-exporter/config.toml"
    config.write Utils.safe_popen_read(bin/"openclaw-tunnel-exporter", "default-config") unless config.exist?
  end

  service do
    run [opt_bin/"openclaw-tunnel-exporter", "--config", etc/"openclaw-tunnel-exporter/config.toml"]
    keep_alive true
    log_path var/"log/openclaw-tunnel-exporter.log"
    error_log_path var/"log/openclaw-tunnel-exporter.log"
  end

  test do
    assert_match version.to_s, shell_output("#{bin}/openclaw-tunnel-exporter --version")
    assert_match "configuration OK", shell_output("#{bin}/openclaw-tunnel-exporter check-config")
    (testpath/"bad.toml").write "[scheduler]\nmax_concurrent_probes = 0\n"
    output = shell_output("#{bin}/openclaw-tunnel-exporter --config #{testpath}/bad.toml check-config 2>&1", 1)
    assert_match "scheduler.max_concurrent_probes", output
  end
end
