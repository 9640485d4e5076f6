"""The CloudFormation resource types each stage may create, under any of its options.

The cicd stage's deploy role must manage every resource of every environment it deploys, but a
stage never reads another stage's template (DESIGN.md, the stage contract). So each stage's
types are declared here, as data next to the stages, and the cicd stage grants what
permissions.py maps the enabled stages' types to. tests/stages/test_cicd.py renders the bundled
config and every example in every environment and fails when a template holds a type its
stage's entry lacks: a stage that starts creating a new type must add it here (and to
permissions.RESOURCE_ACTIONS if it is new there too), or its deployments would be refused.

An entry is the union over the stage's options (consumer on or off, SageMaker or Fargate, ...),
so a role never has to change when an option does.
"""

from typing import Iterable

# What any stage with compute of its own may add beside its main resources: roles and their
# policies, log groups, security groups, queues (dead letters, failures) and small functions.
_SUPPORT = frozenset({
    "AWS::IAM::Role", "AWS::IAM::Policy", "AWS::IAM::ManagedPolicy", "AWS::Logs::LogGroup",
    "AWS::EC2::SecurityGroup", "AWS::EC2::SecurityGroupIngress", "AWS::EC2::SecurityGroupEgress",
    "AWS::SQS::Queue", "AWS::SQS::QueuePolicy", "AWS::Lambda::Function",
    "AWS::Lambda::Permission", "AWS::Events::Rule",
})

STAGE_RESOURCE_TYPES: dict[str, frozenset[str]] = {
    "network": frozenset({
        "AWS::EC2::EIP", "AWS::EC2::FlowLog", "AWS::EC2::InternetGateway", "AWS::EC2::NatGateway",
        "AWS::EC2::Route", "AWS::EC2::RouteTable", "AWS::EC2::SecurityGroup",
        "AWS::EC2::SecurityGroupEgress", "AWS::EC2::SecurityGroupIngress", "AWS::EC2::Subnet",
        "AWS::EC2::SubnetRouteTableAssociation", "AWS::EC2::VPC", "AWS::EC2::VPCEndpoint",
        "AWS::EC2::VPCGatewayAttachment", "AWS::IAM::Role", "AWS::Logs::LogGroup",
    }),
    "storage": frozenset({
        "AWS::KMS::Alias", "AWS::KMS::Key", "AWS::S3::Bucket", "AWS::S3::BucketPolicy",
    }),
    "ingestion": _SUPPORT | frozenset({
        "AWS::Kinesis::Stream", "AWS::KinesisFirehose::DeliveryStream",
        "AWS::Lambda::EventSourceMapping", "AWS::Logs::LogStream",
    }),
    "etl": _SUPPORT | frozenset({
        "AWS::Glue::Connection", "AWS::Glue::Crawler", "AWS::Glue::Database", "AWS::Glue::Job",
        "AWS::Glue::SecurityConfiguration", "AWS::Glue::Table", "AWS::Glue::Trigger",
        "AWS::Glue::Workflow",
    }),
    "analytics": _SUPPORT | frozenset({
        "AWS::Athena::WorkGroup", "AWS::CloudFormation::CustomResource", "AWS::Redshift::Cluster",
        "AWS::Redshift::ClusterParameterGroup", "AWS::Redshift::ClusterSubnetGroup",
        "AWS::RedshiftServerless::Namespace", "AWS::RedshiftServerless::Workgroup",
        "AWS::Scheduler::Schedule", "AWS::SecretsManager::Secret",
    }),
    "training": _SUPPORT | frozenset({
        "AWS::SSM::Parameter", "AWS::SageMaker::ModelPackageGroup", "AWS::SageMaker::Pipeline",
    }),
    "serving": _SUPPORT | frozenset({
        "AWS::ApiGateway::Account", "AWS::ApiGateway::ApiKey", "AWS::ApiGateway::Deployment",
        "AWS::ApiGateway::Method", "AWS::ApiGateway::Resource", "AWS::ApiGateway::RestApi",
        "AWS::ApiGateway::Stage", "AWS::ApiGateway::UsagePlan", "AWS::ApiGateway::UsagePlanKey",
        "AWS::ApiGateway::VpcLink", "AWS::ApiGatewayV2::Api", "AWS::ApiGatewayV2::Integration",
        "AWS::ApiGatewayV2::Route", "AWS::ApiGatewayV2::Stage", "AWS::ApiGatewayV2::VpcLink",
        "AWS::ApplicationAutoScaling::ScalableTarget", "AWS::ApplicationAutoScaling::ScalingPolicy",
        "AWS::CloudWatch::Alarm", "AWS::ECR::Repository", "AWS::ECS::Cluster",
        "AWS::ECS::ClusterCapacityProviderAssociations", "AWS::ECS::Service",
        "AWS::ECS::TaskDefinition", "AWS::ElasticLoadBalancingV2::Listener",
        "AWS::ElasticLoadBalancingV2::ListenerRule", "AWS::ElasticLoadBalancingV2::LoadBalancer",
        "AWS::ElasticLoadBalancingV2::TargetGroup", "AWS::SNS::Topic", "AWS::SageMaker::Endpoint",
        "AWS::SageMaker::EndpointConfig", "AWS::SageMaker::Model", "AWS::Scheduler::Schedule",
        "AWS::StepFunctions::StateMachine", "AWS::WAFv2::WebACL", "AWS::WAFv2::WebACLAssociation",
    }),
    "monitoring": _SUPPORT | frozenset({
        "AWS::CloudWatch::Alarm", "AWS::CloudWatch::CompositeAlarm", "AWS::CloudWatch::Dashboard",
        "AWS::Lambda::EventInvokeConfig", "AWS::Logs::MetricFilter", "AWS::SNS::Subscription",
        "AWS::SNS::Topic", "AWS::SNS::TopicPolicy", "AWS::SageMaker::DataQualityJobDefinition",
        "AWS::SageMaker::ModelQualityJobDefinition", "AWS::SageMaker::MonitoringSchedule",
    }),
    "cicd": _SUPPORT | frozenset({
        "AWS::CloudFormation::WaitConditionHandle", "AWS::CodeBuild::Project",
        "AWS::CodePipeline::Pipeline", "AWS::KMS::Key", "AWS::S3::Bucket",
        "AWS::S3::BucketPolicy",
    }),
}

# The root template: one nested stack per stage.
ROOT_RESOURCE_TYPES = frozenset({"AWS::CloudFormation::Stack"})


def stage_resource_types(stage_names: Iterable[str]) -> frozenset[str]:
    """Every type the given stages (and the root holding them) may create."""
    types = set(ROOT_RESOURCE_TYPES)
    for name in stage_names:
        if name not in STAGE_RESOURCE_TYPES:
            raise KeyError(f"no resource types declared for stage {name!r}: add them to "
                           "mlops_cfn/stages/resource_types.py")
        types |= STAGE_RESOURCE_TYPES[name]
    return frozenset(types)
