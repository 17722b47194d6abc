# A minimal recorder of the Chef DSL, enough to evaluate this cookbook
# without Chef (which cannot be installed on these machines).
#
#   run = ChefRecorder::Run.new('continuum' => {...}, 'deployhook' => {...})
#   run.compile            # evaluates attributes/default.rb, libraries/*.rb, recipes/default.rb
#   run.resources          # [Resource], in declaration order
#   run.render(resource)   # a template resource's content, rendered with ERB
#   run.converge { |step| true }  # applies the steps on this machine (see Run#converge)
#
# The node is a plain nested Hash with string keys: the attribute file's
# `default[...]` values deep-merged under the attributes given to Run.new (as
# Chef merges default under normal; a higher level replaces arrays).
# Resource properties are whitelisted per type, with Chef's own names, so a
# typo or an unsupported property fails here as it would in Chef.

require 'erb'
require 'fileutils'

module ChefRecorder
  ROOT = File.expand_path('..', __dir__)

  PROPERTIES = {
    template:  %w(source owner group mode variables action cookbook sensitive),
    directory: %w(owner group mode recursive action),
    execute:   %w(command environment timeout user group cwd returns action live_stream sensitive),
    file:      %w(content owner group mode action sensitive),
  }.freeze

  # Autovivifying hash: `default['a']['b'] = 1` works as in a Chef attribute file.
  class VividHash < Hash
    def initialize
      super() { |h, k| h[k] = VividHash.new }
    end
  end

  module_function

  def plain(v)
    case v
    when Hash then v.each_with_object({}) { |(k, x), h| h[k.to_s] = plain(x) }
    when Array then v.map { |x| plain(x) }
    else v
    end
  end

  def deep_merge(low, high)
    return plain(high) unless low.is_a?(Hash) && high.is_a?(Hash)
    out = plain(low)
    plain(high).each { |k, v| out[k] = out.key?(k) ? deep_merge(out[k], v) : v }
    out
  end

  def load_attributes(path)
    store = VividHash.new
    ctx = Object.new
    ctx.define_singleton_method(:default) { store }
    ctx.instance_eval(File.read(path), path, 1)
    plain(store)
  end

  def load_libraries
    Dir[File.join(ROOT, 'libraries', '*.rb')].sort.each { |f| require f }
  end

  class Resource
    attr_reader :type, :name, :props, :guards

    def initialize(type, name)
      @type = type
      @name = name
      @props = {}
      @guards = []
    end

    def not_if(cmd = nil, &blk)
      @guards << [:not_if, cmd || blk]
    end

    def only_if(cmd = nil, &blk)
      @guards << [:only_if, cmd || blk]
    end

    def method_missing(m, *args, &blk)
      super unless PROPERTIES[@type].include?(m.to_s) && args.size == 1 && blk.nil?
      @props[m.to_s] = args.first
    end

    def respond_to_missing?(m, priv = false)
      PROPERTIES[@type].include?(m.to_s) || super
    end

    def action_name
      (@props['action'] || default_action).to_s
    end

    def default_action
      { template: :create, directory: :create, execute: :run, file: :create }[@type]
    end

    def to_h
      { 'type' => @type.to_s, 'name' => @name, 'action' => action_name,
        'properties' => @props.reject { |k, _| k == 'action' },
        'guards' => @guards.map { |kind, g| { kind.to_s => g.is_a?(String) ? g : '<ruby block>' } } }
    end
  end

  # Evaluates the recipe. Each instance is one Chef run's compile phase.
  class Run
    attr_reader :node, :resources

    def initialize(attrs = {})
      defaults = ChefRecorder.load_attributes(File.join(ROOT, 'attributes', 'default.rb'))
      @node = ChefRecorder.deep_merge(defaults, attrs)
      @resources = []
    end

    def compile(recipe = 'default')
      ChefRecorder.load_libraries
      path = File.join(ROOT, 'recipes', "#{recipe}.rb")
      instance_eval(File.read(path), path, 1)
      self
    end

    PROPERTIES.each_key do |type|
      define_method(type) do |name, &blk|
        r = Resource.new(type, name)
        r.instance_eval(&blk) if blk
        @resources << r
        r
      end
    end

    def render(resource)
      src = File.join(ROOT, 'templates', 'default', resource.props.fetch('source'))
      ctx = Object.new
      (resource.props['variables'] || {}).each { |k, v| ctx.instance_variable_set("@#{k}", v) }
      node = @node
      ctx.define_singleton_method(:node) { node }
      erb = if ERB.instance_method(:initialize).parameters.assoc(:key)
              ERB.new(File.read(src), trim_mode: '-')
            else
              ERB.new(File.read(src), nil, '-')
            end
      erb.filename = src
      erb.result(ctx.instance_eval { binding })
    end

    def templates
      @resources.select { |r| r.type == :template }
    end

    def commands
      @resources.select { |r| r.type == :execute }.map { |r| r.props['command'] }
    end

    # converge applies the resources in order on this machine, as chef-client
    # would: templates and files are written (owner and mode are ignored),
    # string guards run through /bin/sh, and every execute whose guards let it
    # run is handed to the block, which returns true for success. A failure
    # stops the converge, as a failed execute does in Chef. Returns the
    # executed commands; raises ChefRecorder::ConvergeFailed on failure.
    def converge
      ran = []
      @resources.each do |r|
        case r.type
        when :directory
          FileUtils.mkdir_p(r.name)
        when :template
          File.write(r.name, render(r))
        when :file
          if r.action_name == 'delete'
            FileUtils.rm_f(r.name)
          else
            File.write(r.name, r.props['content'])
          end
        when :execute
          next if skipped?(r)
          ran << r.props['command']
          raise ConvergeFailed, "execute[#{r.name}] failed: #{r.props['command']}" unless yield(r)
        end
      end
      ran
    end

    def skipped?(r)
      r.guards.any? do |kind, g|
        ok = g.is_a?(String) ? system(g) : g.call
        kind == :not_if ? ok : !ok
      end
    end
  end

  class ConvergeFailed < RuntimeError; end
end
