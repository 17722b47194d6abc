# A minimal recorder of the Chef DSL, enough to evaluate this cookbook
# without Chef (which cannot be installed on these machines).
#
#   run = ChefRecorder::Run.new('continuum' => {...}, 'deployhook' => {...})
#   run.compile            # evaluates metadata.rb, attributes/default.rb, libraries/*.rb,
#                          # resources/*.rb and recipes/default.rb
#   run.declared           # the recipe's own resources, in declaration order
#   run.resources          # the resources Chef converges: built-in ones as declared, and in
#                          # place of each custom resource the ones its actions declare
#   run.render(resource)   # a template resource's content, rendered with ERB
#   run.converge { |step| true }  # applies the steps on this machine (see Run#converge)
#
# The node is a plain nested Hash with string keys: the attribute file's
# `default[...]` values deep-merged under the attributes given to Run.new (as
# Chef merges the cookbook's defaults under role and environment attributes;
# a higher level replaces arrays).
#
# Built-in resources (template, directory, execute, file) take a whitelist of
# Chef's own property names, so a typo or an unsupported property fails here
# as it would in Chef. A custom resource (resources/<name>.rb, named
# <cookbook>_<name>) is evaluated as Chef evaluates one: the file is the body
# of a resource class, with `unified_mode`, `provides`, `property` (a type of
# classes and literal values, `name_property`, `required`, `default`,
# `equal_to`), `default_action`, `action :x do ... end` and `action_class`.
# Properties are validated when set, required ones when an action runs;
# inside an action, `new_resource` reads them and the built-in resources
# above record into the custom resource. Its actions run when the run's
# resources are listed: they depend on nothing but the properties. Anything
# else (other resource types, notifications, lazy values) is not supported
# and fails loudly.

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

  # What Chef raises for a property value its declaration does not allow.
  class ValidationFailed < ArgumentError; end

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

  # metadata evaluates metadata.rb with Chef's metadata fields only.
  def metadata
    m = Metadata.new
    path = File.join(ROOT, 'metadata.rb')
    m.instance_eval(File.read(path), path, 1)
    m.fields
  end

  class Metadata
    FIELDS = %w(name maintainer maintainer_email license description long_description version
                chef_version issues_url source_url supports depends).freeze
    attr_reader :fields

    def initialize
      @fields = {}
    end

    FIELDS.each { |f| define_method(f) { |*args| @fields[f] = args.size == 1 ? args.first : args } }
  end

  # custom_resources loads resources/*.rb: { type => resource class }.
  def custom_resources(cookbook)
    Dir[File.join(ROOT, 'resources', '*.rb')].sort.each_with_object({}) do |path, out|
      klass = Class.new(CustomResource)
      klass.resource_type = :"#{cookbook}_#{File.basename(path, '.rb')}"
      klass.class_eval(File.read(path), path, 1)
      out[klass.resource_type] = klass
    end
  end

  # Records the built-in resources; a Run and a custom resource's action use it.
  module ResourceDSL
    PROPERTIES.each_key do |type|
      define_method(type) do |name, &blk|
        r = Resource.new(type, name)
        r.instance_eval(&blk) if blk
        recorded << r
        r
      end
    end
  end

  # Guards is not_if/only_if: a shell command string or a Ruby block.
  module Guards
    def guards
      @guards ||= []
    end

    def not_if(cmd = nil, &blk)
      guards << [:not_if, cmd || blk]
    end

    def only_if(cmd = nil, &blk)
      guards << [:only_if, cmd || blk]
    end
  end

  class Resource
    include Guards
    attr_reader :type, :name, :props

    def initialize(type, name)
      @type = type
      @name = name
      @props = {}
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
        'guards' => guards.map { |kind, g| { kind.to_s => g.is_a?(String) ? g : '<ruby block>' } } }
    end
  end

  # Property is one `property` of a custom resource.
  class Property
    OPTIONS = %i(name_property required default equal_to description).freeze
    attr_reader :name, :opts

    def initialize(name, types, opts)
      bad = opts.keys - OPTIONS
      raise ArgumentError, "property #{name}: unsupported options #{bad.inspect}" unless bad.empty?
      @name = name
      @types = types
      @opts = opts
    end

    def validate(owner, value)
      ok = @types.empty? || @types.any? { |t| t.is_a?(Module) ? value.is_a?(t) : t == value }
      ok &&= !@opts.key?(:equal_to) || @opts[:equal_to].include?(value) || value.nil?
      return value if ok
      raise ValidationFailed, "#{owner}: property #{@name} must be one of #{(@opts[:equal_to] || @types).inspect}, " \
                              "got #{value.inspect}"
    end
  end

  # CustomResource is the base of the classes resources/*.rb define.
  class CustomResource
    class << self
      attr_accessor :resource_type

      def properties
        @properties ||= {}
      end

      def actions
        @actions ||= {}
      end

      def helpers
        @helpers ||= Module.new
      end

      def unified_mode(on)
        raise ArgumentError, 'this recorder evaluates actions in unified mode only' unless on == true
      end

      def provides(type)
        raise ArgumentError, "#{resource_type} cannot provide #{type}" unless type == resource_type
      end

      def property(name, types = [], **opts)
        properties[name] = Property.new(name, Array(types), opts)
      end

      def default_action(name = nil)
        @default_action = name if name
        @default_action || actions.keys.first
      end

      def action(name, &blk)
        actions[name] = blk
      end

      def action_class(&blk)
        helpers.module_eval(&blk)
      end
    end

    include Guards
    attr_reader :name

    def initialize(name)
      @name = name
      @values = {}
      @actions = nil
    end

    def type
      self.class.resource_type
    end

    def action(names)
      names = Array(names)
      unknown = names - self.class.actions.keys
      raise ArgumentError, "#{self}: no action #{unknown.inspect}" unless unknown.empty?
      @actions = names
    end

    def actions
      @actions || [self.class.default_action]
    end

    def to_s
      "#{type}[#{@name}]"
    end

    # A property's setter (one argument) and getter (none).
    def method_missing(m, *args, &blk)
      prop = self.class.properties[m]
      super unless prop && args.size <= 1 && blk.nil?
      return @values[m] = prop.validate(self, args.first) if args.size == 1
      return @values[m] if @values.key?(m)
      prop.opts[:name_property] ? @name : prop.opts[:default]
    end

    def respond_to_missing?(m, priv = false)
      self.class.properties.key?(m) || super
    end

    # expand runs the actions and returns the resources they declare.
    def expand
      self.class.properties.each_value do |p|
        raise ValidationFailed, "#{self}: required property #{p.name} is not set" if p.opts[:required] && !@values.key?(p.name)
        p.validate(self, @name) if p.opts[:name_property] && !@values.key?(p.name)
      end
      actions.flat_map do |a|
        ctx = ActionContext.new(self)
        ctx.instance_eval(&self.class.actions.fetch(a))
        ctx.recorded
      end
    end
  end

  # ActionContext is where an action of a custom resource runs.
  class ActionContext
    include ResourceDSL
    attr_reader :new_resource, :recorded

    def initialize(resource)
      @new_resource = resource
      @recorded = []
      extend resource.class.helpers
    end
  end

  # Evaluates the recipe. Each instance is one Chef run's compile phase.
  class Run
    include ResourceDSL
    attr_reader :node, :declared

    def initialize(attrs = {})
      defaults = ChefRecorder.load_attributes(File.join(ROOT, 'attributes', 'default.rb'))
      @node = ChefRecorder.deep_merge(defaults, attrs)
      @declared = []
      @custom = {}
    end

    def compile(recipe = 'default')
      path = File.join(ROOT, 'recipes', "#{recipe}.rb")
      load_cookbook.eval_recipe(File.read(path), path)
    end

    # load_cookbook loads what a recipe of the cookbook can use: its
    # libraries and its custom resources.
    def load_cookbook
      ChefRecorder.load_libraries
      @cookbook = ChefRecorder.metadata.fetch('name')
      @custom = ChefRecorder.custom_resources(@cookbook)
      self
    end

    # eval_recipe evaluates recipe text, after load_cookbook.
    def eval_recipe(text, path = '(recipe)')
      @resources = nil
      instance_eval(text, path, 1)
      self
    end

    def recorded
      @declared
    end

    # A custom resource of the cookbook, as the recipe declares it.
    def method_missing(m, *args, &blk)
      klass = @custom[m]
      super unless klass && args.size == 1 && blk
      r = klass.new(args.first)
      r.instance_eval(&blk)
      @declared << r
      r
    end

    def respond_to_missing?(m, priv = false)
      @custom.key?(m) || super
    end

    # resources lists what Chef converges, custom resources expanded.
    def resources
      @resources ||= @declared.flat_map { |r| r.is_a?(CustomResource) ? r.expand : [r] }
    end

    def render(resource)
      cookbook = resource.props['cookbook']
      raise ArgumentError, "#{resource.name}: template of cookbook #{cookbook}" if cookbook && cookbook != @cookbook
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
      resources.select { |r| r.type == :template }
    end

    def commands
      resources.select { |r| r.type == :execute }.map { |r| r.props['command'] }
    end

    # converge applies the resources in order on this machine, as chef-client
    # would: templates and files are written (owner and mode are ignored),
    # string guards run through /bin/sh, and every execute whose guards let it
    # run is handed to the block, which returns true for success. A custom
    # resource whose guards hold is skipped whole. A failure stops the
    # converge, as a failed execute does in Chef. Returns the executed
    # commands; raises ChefRecorder::ConvergeFailed on failure.
    def converge(&ok)
      ran = []
      @declared.each do |r|
        if r.is_a?(CustomResource)
          next if skipped?(r)
          r.expand.each { |c| apply(c, ran, &ok) }
        else
          apply(r, ran, &ok)
        end
      end
      ran
    end

    def apply(r, ran)
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
        return if skipped?(r)
        ran << r.props['command']
        raise ConvergeFailed, "execute[#{r.name}] failed: #{r.props['command']}" unless yield(r)
      end
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
