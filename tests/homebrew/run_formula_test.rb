# Runs a Homebrew formula's `test do` block without Homebrew (CI has no macOS): just enough of the Formula DSL
# to load the file, and the helpers its test block calls (shell_output with its exit-status check,
# assert_match, testpath, bin, version), over a binary that is already built.
# Usage: ruby run_formula_test.rb FORMULA.rb BIN_DIR
require "tmpdir"
require "pathname"

class Formula
  class << self
    attr_reader :test_block, :fields

    def method_missing(name, *args, **_kwargs, &_block)
      (@fields ||= {})[name] = args.first
    end

    def respond_to_missing?(*) = true

    def test(&block) = @test_block = block
    def service(&_block) = nil
  end

  attr_reader :testpath

  def initialize(bin_dir, testpath)
    @bin = Pathname(bin_dir)
    @testpath = Pathname(testpath)
  end

  def bin = @bin
  def version = self.class.fields.fetch(:version)

  def shell_output(command, expected_status = 0)
    output = `#{command}`
    status = $?.exitstatus
    raise "`#{command}` exited #{status}, expected #{expected_status}:\n#{output}" unless status == expected_status
    output
  end

  def assert_match(pattern, text)
    matched = pattern.is_a?(Regexp) ? pattern.match?(text) : text.include?(pattern)
    raise "expected #{pattern.inspect} in:\n#{text}" unless matched
  end
end

module Utils
  def self.safe_popen_read(*args) = IO.popen(args.map(&:to_s), &:read)
end

formula_file, bin_dir = ARGV
load formula_file
formula_class = Object.const_get(:OpenclawTunnelExporter)
Dir.mktmpdir do |dir|
  formula_class.new(bin_dir, dir).instance_eval(&formula_class.test_block)
end
puts "formula test passed"
