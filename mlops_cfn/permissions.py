"""What managing each CloudFormation resource type takes in IAM: for deploy and launch roles.

A role that deploys the pipeline's templates (the CI/CD CloudFormation role, the Service Catalog
launch role) must create, update and delete every resource the templates hold, and nothing
else. This module maps each resource type our stages create to the IAM actions CloudFormation
calls for it (its create, read, update, delete and list handlers, tagging, and the calls it
makes on other services for it: `ec2:Describe*` lookups, `iam:PassRole`, `kms:CreateGrant`).

API (stable: the cicd stage and servicecatalog.py use it):

- `actions_for(resource_types) -> list[str]`: every action, sorted, without repeats.
- `deployment_statements(resource_types) -> list[Statement]`: awacs statements granting them,
  one per service, each limited to this account (and region, for regional services):
  `arn:${AWS::Partition}:<service>:${AWS::Region}:${AWS::AccountId}:*`. Actions AWS cannot
  scope to a resource (`ec2:DescribeVpcs`, `kms:CreateKey`, ...) share one statement on `*`;
  `iam:PassRole` gets its own, limited by `iam:PassedToService` to the services the types hand
  roles to.
- `policy_documents(statements, limit)`: the statements packed into documents that each fit a
  managed policy (6,144 characters), for roles whose grants outgrow one policy.

An unknown type is a `KeyError` naming it: a role that silently lacked a permission would fail
halfway through a deployment. Every action here is an explicit name; there is no `*` and no
`<service>:*`. Two wildcards remain, `kms:ReEncrypt*` and `kms:GenerateDataKey*`, which name
small families of key-use calls (the test checks that every action and prefix exists and that
the resource scoping matches what AWS supports for it, against cfn-lint's IAM data).

What the map does not give: access to the bucket the packaged templates and assets are in, and
to the stacks themselves (beyond nested stacks); the caller knows those names and adds them.

Which types a deployment needs: `stage_resource_types` in stages/resource_types.py (per stage),
or the types found in rendered templates (servicecatalog.py).
"""

import json
from typing import Iterable, Sequence

from awacs.aws import Action, Allow, Condition, PolicyDocument, Statement, StringEquals
from troposphere import Sub, encode_to_dict

from .policies import POLICY_VERSION

# A managed policy holds at most 6,144 characters (whitespace excluded).
MANAGED_POLICY_LIMIT = 6144


def _of(service: str, names: str) -> tuple[str, ...]:
    return tuple(f"{service}:{name}" for name in names.split())


# --- building blocks shared by several types -------------------------------------------------

# Cryptographic use of a customer-managed key by CloudFormation's caller: services that
# encrypt a resource with a key given at creation check that the caller may use it, and create
# a grant for themselves.
_KEY_USE = _of("kms", "CreateGrant DescribeKey Decrypt Encrypt GenerateDataKey* ReEncrypt*")
# Lookups services make while placing a resource in a VPC.
_VPC_LOOKUPS = _of("ec2", "DescribeVpcs DescribeSubnets DescribeSecurityGroups "
                          "DescribeNetworkInterfaces DescribeAvailabilityZones")
_EC2_TAGS = _of("ec2", "CreateTags DeleteTags DescribeTags")
# Services that create their service-linked role on first use (ECS, ELB, Auto Scaling, ...).
_SERVICE_LINKED_ROLE = _of("iam", "CreateServiceLinkedRole")
# API Gateway authorizes by HTTP verb on resource paths (both REST and HTTP APIs).
_API_GATEWAY = _of("apigateway", "GET POST PUT PATCH DELETE")
_SECRETS = _of("secretsmanager", "CreateSecret DeleteSecret DescribeSecret UpdateSecret "
                                 "PutSecretValue RotateSecret TagResource UntagResource "
                                 "GetRandomPassword")
_SAGEMAKER_TAGS = _of("sagemaker", "AddTags DeleteTags ListTags")


def _glue(kind: str) -> tuple[str, ...]:
    return _of("glue", f"Create{kind} Delete{kind} Get{kind} Update{kind} "
                       "TagResource UntagResource GetTags")


def _sagemaker_job_definition(kind: str) -> tuple[str, ...]:
    return (*_of("sagemaker", f"Create{kind}JobDefinition Delete{kind}JobDefinition "
                              f"Describe{kind}JobDefinition"),
            *_SAGEMAKER_TAGS, *_VPC_LOOKUPS)


# --- the map ---------------------------------------------------------------------------------

RESOURCE_ACTIONS: dict[str, tuple[str, ...]] = {
    # CloudFormation
    "AWS::CloudFormation::Stack": _of(
        "cloudformation",
        "CreateStack UpdateStack DeleteStack DescribeStacks DescribeStackEvents "
        "DescribeStackResources GetTemplate CreateChangeSet DescribeChangeSet ExecuteChangeSet "
        "DeleteChangeSet TagResource UntagResource"),
    # A placeholder resource: CloudFormation makes no call for it.
    "AWS::CloudFormation::WaitConditionHandle": (),
    "AWS::CloudFormation::CustomResource": _of("lambda", "InvokeFunction"),

    # EC2 networking
    "AWS::EC2::VPC": (*_of("ec2", "CreateVpc DeleteVpc ModifyVpcAttribute DescribeVpcs "
                                  "DescribeVpcAttribute DescribeSecurityGroups "
                                  "DescribeNetworkAcls DescribeRouteTables"), *_EC2_TAGS),
    "AWS::EC2::Subnet": (*_of("ec2", "CreateSubnet DeleteSubnet ModifySubnetAttribute "
                                     "DescribeSubnets DescribeAvailabilityZones "
                                     "DescribeNetworkAcls"), *_EC2_TAGS),
    "AWS::EC2::RouteTable": (*_of("ec2", "CreateRouteTable DeleteRouteTable "
                                         "DescribeRouteTables"), *_EC2_TAGS),
    "AWS::EC2::Route": _of("ec2", "CreateRoute DeleteRoute ReplaceRoute DescribeRouteTables"),
    "AWS::EC2::SubnetRouteTableAssociation": _of(
        "ec2", "AssociateRouteTable DisassociateRouteTable ReplaceRouteTableAssociation "
               "DescribeRouteTables DescribeSubnets"),
    "AWS::EC2::InternetGateway": (*_of("ec2", "CreateInternetGateway DeleteInternetGateway "
                                              "DescribeInternetGateways"), *_EC2_TAGS),
    "AWS::EC2::VPCGatewayAttachment": _of(
        "ec2", "AttachInternetGateway DetachInternetGateway DescribeInternetGateways"),
    "AWS::EC2::NatGateway": (*_of("ec2", "CreateNatGateway DeleteNatGateway DescribeNatGateways "
                                         "DescribeAddresses"), *_EC2_TAGS),
    "AWS::EC2::EIP": (*_of("ec2", "AllocateAddress ReleaseAddress DescribeAddresses "
                                  "AssociateAddress DisassociateAddress"), *_EC2_TAGS),
    "AWS::EC2::VPCEndpoint": (
        *_of("ec2", "CreateVpcEndpoint DeleteVpcEndpoints ModifyVpcEndpoint DescribeVpcEndpoints "
                    "DescribeVpcEndpointServices DescribePrefixLists DescribeRouteTables"),
        *_EC2_TAGS, *_VPC_LOOKUPS,
        # Private DNS of an interface endpoint joins the VPC to a zone AWS owns.
        *_of("route53", "AssociateVPCWithHostedZone DisassociateVPCFromHostedZone")),
    "AWS::EC2::SecurityGroup": (
        *_of("ec2", "CreateSecurityGroup DeleteSecurityGroup DescribeSecurityGroups "
                    "DescribeSecurityGroupRules AuthorizeSecurityGroupIngress "
                    "AuthorizeSecurityGroupEgress RevokeSecurityGroupIngress "
                    "RevokeSecurityGroupEgress UpdateSecurityGroupRuleDescriptionsIngress "
                    "UpdateSecurityGroupRuleDescriptionsEgress ModifySecurityGroupRules"),
        *_EC2_TAGS),
    "AWS::EC2::SecurityGroupIngress": _of(
        "ec2", "AuthorizeSecurityGroupIngress RevokeSecurityGroupIngress DescribeSecurityGroups "
               "DescribeSecurityGroupRules UpdateSecurityGroupRuleDescriptionsIngress "
               "ModifySecurityGroupRules"),
    "AWS::EC2::SecurityGroupEgress": _of(
        "ec2", "AuthorizeSecurityGroupEgress RevokeSecurityGroupEgress DescribeSecurityGroups "
               "DescribeSecurityGroupRules UpdateSecurityGroupRuleDescriptionsEgress "
               "ModifySecurityGroupRules"),
    "AWS::EC2::FlowLog": (
        *_of("ec2", "CreateFlowLogs DeleteFlowLogs DescribeFlowLogs"), *_EC2_TAGS,
        # Flow logs to S3 or Firehose are "vended logs" delivered through CloudWatch Logs.
        *_of("logs", "CreateLogDelivery DeleteLogDelivery")),

    # IAM
    "AWS::IAM::Role": _of(
        "iam", "CreateRole DeleteRole GetRole UpdateRole UpdateRoleDescription "
               "UpdateAssumeRolePolicy PutRolePolicy GetRolePolicy DeleteRolePolicy "
               "ListRolePolicies AttachRolePolicy DetachRolePolicy ListAttachedRolePolicies "
               "ListInstanceProfilesForRole TagRole UntagRole ListRoleTags "
               "PutRolePermissionsBoundary DeleteRolePermissionsBoundary"),
    "AWS::IAM::ManagedPolicy": _of(
        "iam", "CreatePolicy DeletePolicy GetPolicy GetPolicyVersion CreatePolicyVersion "
               "DeletePolicyVersion ListPolicyVersions ListEntitiesForPolicy AttachRolePolicy "
               "DetachRolePolicy TagPolicy UntagPolicy"),
    "AWS::IAM::Policy": _of("iam", "PutRolePolicy GetRolePolicy DeleteRolePolicy"),

    # KMS
    "AWS::KMS::Key": _of(
        "kms", "CreateKey DescribeKey GetKeyPolicy PutKeyPolicy EnableKeyRotation "
               "DisableKeyRotation GetKeyRotationStatus EnableKey DisableKey "
               "UpdateKeyDescription ListResourceTags TagResource UntagResource "
               "ScheduleKeyDeletion ListKeys"),
    "AWS::KMS::Alias": _of("kms", "CreateAlias DeleteAlias UpdateAlias ListAliases"),

    # S3: the bucket handler reads back every configuration, set or not.
    "AWS::S3::Bucket": _of(
        "s3", "CreateBucket DeleteBucket ListBucket GetBucketLocation GetBucketAcl "
              "PutEncryptionConfiguration GetEncryptionConfiguration "
              "PutBucketVersioning GetBucketVersioning "
              "PutBucketPublicAccessBlock GetBucketPublicAccessBlock "
              "PutBucketOwnershipControls GetBucketOwnershipControls "
              "PutBucketLogging GetBucketLogging "
              "PutLifecycleConfiguration GetLifecycleConfiguration "
              "PutBucketNotification GetBucketNotification "
              "PutBucketTagging GetBucketTagging "
              "PutBucketObjectLockConfiguration GetBucketObjectLockConfiguration "
              "GetAccelerateConfiguration GetAnalyticsConfiguration GetBucketCORS "
              "GetBucketWebsite GetInventoryConfiguration GetMetricsConfiguration "
              "GetReplicationConfiguration GetIntelligentTieringConfiguration "
              "ListAllMyBuckets"),
    "AWS::S3::BucketPolicy": _of("s3", "PutBucketPolicy GetBucketPolicy DeleteBucketPolicy"),

    # CloudWatch Logs
    "AWS::Logs::LogGroup": _of(
        "logs", "CreateLogGroup DeleteLogGroup DescribeLogGroups PutRetentionPolicy "
                "DeleteRetentionPolicy AssociateKmsKey DisassociateKmsKey TagResource "
                "UntagResource ListTagsForResource TagLogGroup UntagLogGroup ListTagsLogGroup"),
    "AWS::Logs::LogStream": _of("logs", "CreateLogStream DeleteLogStream DescribeLogStreams"),
    "AWS::Logs::MetricFilter": _of(
        "logs", "PutMetricFilter DeleteMetricFilter DescribeMetricFilters"),
    "AWS::Logs::SubscriptionFilter": _of(
        "logs", "PutSubscriptionFilter DeleteSubscriptionFilter DescribeSubscriptionFilters"),

    # Kinesis and Firehose
    "AWS::Kinesis::Stream": (
        *_of("kinesis", "CreateStream DeleteStream DescribeStream DescribeStreamSummary "
                        "ListStreams UpdateShardCount UpdateStreamMode "
                        "IncreaseStreamRetentionPeriod DecreaseStreamRetentionPeriod "
                        "StartStreamEncryption StopStreamEncryption AddTagsToStream "
                        "RemoveTagsFromStream ListTagsForStream EnableEnhancedMonitoring "
                        "DisableEnhancedMonitoring"),
        *_KEY_USE),
    "AWS::KinesisFirehose::DeliveryStream": (
        *_of("firehose", "CreateDeliveryStream DeleteDeliveryStream DescribeDeliveryStream "
                         "UpdateDestination TagDeliveryStream UntagDeliveryStream "
                         "ListTagsForDeliveryStream StartDeliveryStreamEncryption "
                         "StopDeliveryStreamEncryption ListDeliveryStreams"),
        *_KEY_USE),

    # Lambda
    "AWS::Lambda::Function": (
        *_of("lambda", "CreateFunction DeleteFunction GetFunction GetFunctionConfiguration "
                       "UpdateFunctionCode UpdateFunctionConfiguration PutFunctionConcurrency "
                       "DeleteFunctionConcurrency GetFunctionConcurrency TagResource "
                       "UntagResource ListTags GetFunctionCodeSigningConfig "
                       "GetRuntimeManagementConfig PutRuntimeManagementConfig"),
        *_VPC_LOOKUPS, *_KEY_USE),
    "AWS::Lambda::EventSourceMapping": _of(
        "lambda", "CreateEventSourceMapping DeleteEventSourceMapping GetEventSourceMapping "
                  "UpdateEventSourceMapping ListEventSourceMappings TagResource UntagResource "
                  "ListTags"),
    "AWS::Lambda::Permission": _of("lambda", "AddPermission RemovePermission GetPolicy"),
    "AWS::Lambda::EventInvokeConfig": _of(
        "lambda", "PutFunctionEventInvokeConfig UpdateFunctionEventInvokeConfig "
                  "DeleteFunctionEventInvokeConfig GetFunctionEventInvokeConfig"),

    # SQS and SNS
    "AWS::SQS::Queue": _of(
        "sqs", "CreateQueue DeleteQueue GetQueueAttributes SetQueueAttributes GetQueueUrl "
               "TagQueue UntagQueue ListQueueTags ListQueues"),
    "AWS::SQS::QueuePolicy": _of("sqs", "SetQueueAttributes GetQueueAttributes GetQueueUrl"),
    "AWS::SNS::Topic": _of(
        "sns", "CreateTopic DeleteTopic GetTopicAttributes SetTopicAttributes TagResource "
               "UntagResource ListTagsForResource Subscribe Unsubscribe "
               "ListSubscriptionsByTopic GetDataProtectionPolicy PutDataProtectionPolicy"),
    "AWS::SNS::Subscription": _of(
        "sns", "Subscribe Unsubscribe GetSubscriptionAttributes SetSubscriptionAttributes "
               "ListSubscriptionsByTopic"),
    "AWS::SNS::TopicPolicy": _of("sns", "SetTopicAttributes GetTopicAttributes"),

    # CloudWatch and EventBridge
    "AWS::CloudWatch::Alarm": _of(
        "cloudwatch", "PutMetricAlarm DeleteAlarms DescribeAlarms TagResource UntagResource "
                      "ListTagsForResource"),
    "AWS::CloudWatch::CompositeAlarm": _of(
        "cloudwatch", "PutCompositeAlarm DeleteAlarms DescribeAlarms TagResource UntagResource "
                      "ListTagsForResource"),
    "AWS::CloudWatch::Dashboard": _of(
        "cloudwatch", "PutDashboard DeleteDashboards GetDashboard ListDashboards"),
    "AWS::Events::Rule": _of(
        "events", "PutRule DeleteRule DescribeRule EnableRule DisableRule PutTargets "
                  "RemoveTargets ListTargetsByRule TagResource UntagResource "
                  "ListTagsForResource"),
    "AWS::Scheduler::Schedule": _of(
        "scheduler", "CreateSchedule DeleteSchedule GetSchedule UpdateSchedule"),

    # Glue
    "AWS::Glue::Database": _of("glue", "CreateDatabase DeleteDatabase GetDatabase "
                                       "UpdateDatabase"),
    "AWS::Glue::Table": _of("glue", "CreateTable DeleteTable GetTable UpdateTable GetDatabase"),
    "AWS::Glue::Job": _glue("Job"),
    "AWS::Glue::Crawler": (*_glue("Crawler"), *_of("glue", "StopCrawler")),
    "AWS::Glue::Trigger": (*_glue("Trigger"), *_of("glue", "StartTrigger StopTrigger")),
    "AWS::Glue::Workflow": _glue("Workflow"),
    "AWS::Glue::SecurityConfiguration": _of(
        "glue", "CreateSecurityConfiguration DeleteSecurityConfiguration "
                "GetSecurityConfiguration"),
    "AWS::Glue::Connection": (
        *_of("glue", "CreateConnection DeleteConnection GetConnection UpdateConnection"),
        *_VPC_LOOKUPS),

    # Redshift
    "AWS::RedshiftServerless::Namespace": (
        *_of("redshift-serverless", "CreateNamespace DeleteNamespace GetNamespace "
                                    "UpdateNamespace ListNamespaces TagResource UntagResource "
                                    "ListTagsForResource"),
        *_KEY_USE, *_SECRETS, *_SERVICE_LINKED_ROLE),
    "AWS::RedshiftServerless::Workgroup": (
        *_of("redshift-serverless", "CreateWorkgroup DeleteWorkgroup GetWorkgroup "
                                    "UpdateWorkgroup ListWorkgroups TagResource UntagResource "
                                    "ListTagsForResource"),
        *_VPC_LOOKUPS, *_of("ec2", "DescribeVpcAttribute DescribeAccountAttributes "
                                   "DescribeAddresses DescribeInternetGateways"),
        *_SERVICE_LINKED_ROLE),
    "AWS::Redshift::Cluster": (
        *_of("redshift", "CreateCluster DeleteCluster DescribeClusters ModifyCluster "
                         "ModifyClusterIamRoles RebootCluster EnableLogging DisableLogging "
                         "DescribeLoggingStatus CreateTags DeleteTags DescribeTags"),
        *_VPC_LOOKUPS, *_KEY_USE, *_SECRETS, *_SERVICE_LINKED_ROLE),
    "AWS::Redshift::ClusterSubnetGroup": (
        *_of("redshift", "CreateClusterSubnetGroup DeleteClusterSubnetGroup "
                         "DescribeClusterSubnetGroups ModifyClusterSubnetGroup CreateTags "
                         "DeleteTags DescribeTags"),
        *_VPC_LOOKUPS),
    "AWS::Redshift::ClusterParameterGroup": _of(
        "redshift", "CreateClusterParameterGroup DeleteClusterParameterGroup "
                    "DescribeClusterParameterGroups DescribeClusterParameters "
                    "ModifyClusterParameterGroup ResetClusterParameterGroup CreateTags "
                    "DeleteTags DescribeTags"),
    "AWS::SecretsManager::Secret": (*_SECRETS, *_of("secretsmanager", "ListSecrets"),
                                    *_KEY_USE),
    "AWS::Athena::WorkGroup": _of(
        "athena", "CreateWorkGroup DeleteWorkGroup GetWorkGroup UpdateWorkGroup TagResource "
                  "UntagResource ListTagsForResource"),
    "AWS::SSM::Parameter": _of(
        "ssm", "PutParameter DeleteParameter GetParameter GetParameters AddTagsToResource "
               "RemoveTagsFromResource ListTagsForResource DescribeParameters"),

    # SageMaker
    "AWS::SageMaker::Pipeline": (
        *_of("sagemaker", "CreatePipeline DeletePipeline DescribePipeline UpdatePipeline"),
        *_SAGEMAKER_TAGS),
    "AWS::SageMaker::ModelPackageGroup": (
        *_of("sagemaker", "CreateModelPackageGroup DeleteModelPackageGroup "
                          "DescribeModelPackageGroup PutModelPackageGroupPolicy "
                          "GetModelPackageGroupPolicy DeleteModelPackageGroupPolicy"),
        *_SAGEMAKER_TAGS),
    "AWS::SageMaker::Model": (
        *_of("sagemaker", "CreateModel DeleteModel DescribeModel"), *_SAGEMAKER_TAGS,
        *_VPC_LOOKUPS),
    "AWS::SageMaker::EndpointConfig": (
        *_of("sagemaker", "CreateEndpointConfig DeleteEndpointConfig DescribeEndpointConfig"),
        *_SAGEMAKER_TAGS, *_KEY_USE),
    "AWS::SageMaker::Endpoint": (
        *_of("sagemaker", "CreateEndpoint DeleteEndpoint DescribeEndpoint UpdateEndpoint "
                          "UpdateEndpointWeightsAndCapacities DescribeEndpointConfig"),
        *_SAGEMAKER_TAGS, *_KEY_USE),
    "AWS::SageMaker::DataQualityJobDefinition": _sagemaker_job_definition("DataQuality"),
    "AWS::SageMaker::ModelQualityJobDefinition": _sagemaker_job_definition("ModelQuality"),
    "AWS::SageMaker::MonitoringSchedule": (
        *_of("sagemaker", "CreateMonitoringSchedule DeleteMonitoringSchedule "
                          "DescribeMonitoringSchedule UpdateMonitoringSchedule "
                          "StopMonitoringSchedule"),
        *_SAGEMAKER_TAGS),

    # Serving: auto scaling, Step Functions, ECS, load balancing, API Gateway, WAF, ECR
    "AWS::ApplicationAutoScaling::ScalableTarget": (
        *_of("application-autoscaling", "RegisterScalableTarget DeregisterScalableTarget "
                                        "DescribeScalableTargets TagResource UntagResource "
                                        "ListTagsForResource"),
        # It checks the target it scales exists (an endpoint variant, an ECS service).
        *_of("sagemaker", "DescribeEndpoint UpdateEndpointWeightsAndCapacities"),
        *_of("ecs", "DescribeServices UpdateService"),
        *_of("cloudwatch", "DescribeAlarms PutMetricAlarm DeleteAlarms"),
        *_SERVICE_LINKED_ROLE),
    "AWS::ApplicationAutoScaling::ScalingPolicy": (
        *_of("application-autoscaling", "PutScalingPolicy DeleteScalingPolicy "
                                        "DescribeScalingPolicies"),
        *_of("cloudwatch", "DescribeAlarms PutMetricAlarm DeleteAlarms")),
    "AWS::StepFunctions::StateMachine": (
        *_of("states", "CreateStateMachine DeleteStateMachine DescribeStateMachine "
                       "UpdateStateMachine TagResource UntagResource ListTagsForResource"),
        # Execution logging to CloudWatch Logs is a vended-log delivery.
        *_of("logs", "CreateLogDelivery GetLogDelivery UpdateLogDelivery DeleteLogDelivery "
                     "ListLogDeliveries PutResourcePolicy DescribeResourcePolicies "
                     "DescribeLogGroups"),
        *_KEY_USE),
    "AWS::ECS::Cluster": (
        *_of("ecs", "CreateCluster DeleteCluster DescribeClusters UpdateCluster "
                    "UpdateClusterSettings PutClusterCapacityProviders TagResource "
                    "UntagResource ListTagsForResource"),
        *_SERVICE_LINKED_ROLE, *_KEY_USE),
    "AWS::ECS::ClusterCapacityProviderAssociations": _of(
        "ecs", "PutClusterCapacityProviders DescribeClusters"),
    "AWS::ECS::TaskDefinition": _of(
        "ecs", "RegisterTaskDefinition DeregisterTaskDefinition DescribeTaskDefinition "
               "TagResource UntagResource ListTagsForResource"),
    "AWS::ECS::Service": (
        *_of("ecs", "CreateService DeleteService DescribeServices UpdateService TagResource "
                    "UntagResource ListTagsForResource"),
        *_of("elasticloadbalancing", "DescribeTargetGroups DescribeLoadBalancers "
                                     "DescribeListeners DescribeRules"),
        *_VPC_LOOKUPS, *_SERVICE_LINKED_ROLE),
    "AWS::ElasticLoadBalancingV2::LoadBalancer": (
        *_of("elasticloadbalancing", "CreateLoadBalancer DeleteLoadBalancer "
                                     "DescribeLoadBalancers DescribeLoadBalancerAttributes "
                                     "ModifyLoadBalancerAttributes SetSecurityGroups "
                                     "SetSubnets SetIpAddressType AddTags RemoveTags "
                                     "DescribeTags"),
        *_VPC_LOOKUPS, *_of("ec2", "DescribeInternetGateways DescribeAccountAttributes"),
        *_SERVICE_LINKED_ROLE),
    "AWS::ElasticLoadBalancingV2::TargetGroup": _of(
        "elasticloadbalancing", "CreateTargetGroup DeleteTargetGroup DescribeTargetGroups "
                                "DescribeTargetGroupAttributes ModifyTargetGroup "
                                "ModifyTargetGroupAttributes AddTags RemoveTags DescribeTags"),
    "AWS::ElasticLoadBalancingV2::Listener": _of(
        "elasticloadbalancing", "CreateListener DeleteListener DescribeListeners "
                                "ModifyListener DescribeListenerAttributes "
                                "ModifyListenerAttributes AddTags RemoveTags DescribeTags"),
    "AWS::ElasticLoadBalancingV2::ListenerRule": _of(
        "elasticloadbalancing", "CreateRule DeleteRule DescribeRules ModifyRule "
                                "SetRulePriorities AddTags RemoveTags DescribeTags"),
    "AWS::ApiGateway::RestApi": _API_GATEWAY,
    "AWS::ApiGateway::Resource": _API_GATEWAY,
    "AWS::ApiGateway::Method": _API_GATEWAY,
    "AWS::ApiGateway::Deployment": _API_GATEWAY,
    "AWS::ApiGateway::Stage": (*_API_GATEWAY, *_of("logs", "DescribeLogGroups")),
    "AWS::ApiGateway::Account": _API_GATEWAY,
    "AWS::ApiGateway::UsagePlan": _API_GATEWAY,
    "AWS::ApiGateway::ApiKey": _API_GATEWAY,
    "AWS::ApiGateway::UsagePlanKey": _API_GATEWAY,
    "AWS::ApiGateway::VpcLink": (
        *_API_GATEWAY,
        # A REST API VPC link is an endpoint service in front of a network load balancer.
        *_of("elasticloadbalancing", "DescribeLoadBalancers"),
        *_of("ec2", "CreateVpcEndpointServiceConfiguration "
                    "DeleteVpcEndpointServiceConfigurations "
                    "DescribeVpcEndpointServiceConfigurations "
                    "ModifyVpcEndpointServicePermissions")),
    "AWS::ApiGatewayV2::Api": _API_GATEWAY,
    "AWS::ApiGatewayV2::Integration": _API_GATEWAY,
    "AWS::ApiGatewayV2::Route": _API_GATEWAY,
    "AWS::ApiGatewayV2::Stage": (*_API_GATEWAY, *_of("logs", "DescribeLogGroups")),
    "AWS::ApiGatewayV2::VpcLink": (*_API_GATEWAY, *_VPC_LOOKUPS, *_SERVICE_LINKED_ROLE,
                                   *_of("ec2", "CreateNetworkInterface DeleteNetworkInterface "
                                               "CreateTags")),
    "AWS::WAFv2::WebACL": _of(
        "wafv2", "CreateWebACL DeleteWebACL GetWebACL UpdateWebACL TagResource UntagResource "
                 "ListTagsForResource"),
    "AWS::WAFv2::WebACLAssociation": (
        *_of("wafv2", "AssociateWebACL DisassociateWebACL GetWebACLForResource GetWebACL"),
        *_of("apigateway", "SetWebACL"), *_of("elasticloadbalancing", "SetWebAcl")),
    "AWS::ECR::Repository": (
        *_of("ecr", "CreateRepository DeleteRepository DescribeRepositories "
                    "PutImageScanningConfiguration PutImageTagMutability PutLifecyclePolicy "
                    "GetLifecyclePolicy DeleteLifecyclePolicy SetRepositoryPolicy "
                    "GetRepositoryPolicy DeleteRepositoryPolicy TagResource UntagResource "
                    "ListTagsForResource"),
        *_KEY_USE),

    # CI/CD
    "AWS::CodeBuild::Project": (
        *_of("codebuild", "CreateProject DeleteProject BatchGetProjects UpdateProject"),
        *_VPC_LOOKUPS, *_of("ec2", "DescribeDhcpOptions")),
    "AWS::CodePipeline::Pipeline": (
        *_of("codepipeline", "CreatePipeline DeletePipeline GetPipeline UpdatePipeline "
                             "GetPipelineState TagResource UntagResource ListTagsForResource"),
        # A pipeline whose source is a Git connection needs the right to use that connection.
        *_of("codestar-connections", "PassConnection"),
        *_of("codeconnections", "PassConnection")),
}

# Types that hand an IAM role to a service (which then acts with it), and to which service;
# `iam:PassRole` is granted for those services only.
PASSES_ROLE_TO: dict[str, tuple[str, ...]] = {
    # Nested stacks run with their parent's service role.
    "AWS::CloudFormation::Stack": ("cloudformation.amazonaws.com",),
    "AWS::EC2::FlowLog": ("vpc-flow-logs.amazonaws.com",),
    "AWS::KinesisFirehose::DeliveryStream": ("firehose.amazonaws.com",),
    "AWS::Lambda::Function": ("lambda.amazonaws.com",),
    "AWS::Logs::SubscriptionFilter": ("logs.amazonaws.com",),
    "AWS::Events::Rule": ("events.amazonaws.com",),
    "AWS::Scheduler::Schedule": ("scheduler.amazonaws.com",),
    "AWS::Glue::Job": ("glue.amazonaws.com",),
    "AWS::Glue::Crawler": ("glue.amazonaws.com",),
    "AWS::RedshiftServerless::Namespace": ("redshift.amazonaws.com",
                                           "redshift-serverless.amazonaws.com"),
    "AWS::Redshift::Cluster": ("redshift.amazonaws.com",),
    "AWS::SageMaker::Pipeline": ("sagemaker.amazonaws.com",),
    "AWS::SageMaker::Model": ("sagemaker.amazonaws.com",),
    "AWS::SageMaker::DataQualityJobDefinition": ("sagemaker.amazonaws.com",),
    "AWS::SageMaker::ModelQualityJobDefinition": ("sagemaker.amazonaws.com",),
    "AWS::SageMaker::MonitoringSchedule": ("sagemaker.amazonaws.com",),
    "AWS::StepFunctions::StateMachine": ("states.amazonaws.com",),
    "AWS::ECS::TaskDefinition": ("ecs-tasks.amazonaws.com",),
    "AWS::ApiGateway::Account": ("apigateway.amazonaws.com",),
    "AWS::CodeBuild::Project": ("codebuild.amazonaws.com",),
    "AWS::CodePipeline::Pipeline": ("codepipeline.amazonaws.com",),
}

PASS_ROLE = "iam:PassRole"

# Actions of the map for which AWS supports no resource-level permission: a statement naming
# any resource other than `*` would never match them. (Checked against cfn-lint's copy of the
# IAM service reference by tests/test_permissions.py, in both directions.)
ACTIONS_WITHOUT_RESOURCE_SCOPE = frozenset({
    "application-autoscaling:DescribeScalableTargets",
    "application-autoscaling:DescribeScalingPolicies",
    "cloudwatch:ListDashboards",
    "ec2:DescribeAccountAttributes",
    "ec2:DescribeAddresses",
    "ec2:DescribeAvailabilityZones",
    "ec2:DescribeDhcpOptions",
    "ec2:DescribeFlowLogs",
    "ec2:DescribeInternetGateways",
    "ec2:DescribeNatGateways",
    "ec2:DescribeNetworkAcls",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DescribePrefixLists",
    "ec2:DescribeRouteTables",
    "ec2:DescribeSecurityGroupRules",
    "ec2:DescribeSecurityGroups",
    "ec2:DescribeSubnets",
    "ec2:DescribeTags",
    "ec2:DescribeVpcEndpointServiceConfigurations",
    "ec2:DescribeVpcEndpointServices",
    "ec2:DescribeVpcEndpoints",
    "ec2:DescribeVpcs",
    "ecs:DeregisterTaskDefinition",
    "ecs:DescribeTaskDefinition",
    "elasticloadbalancing:DescribeListenerAttributes",
    "elasticloadbalancing:DescribeListeners",
    "elasticloadbalancing:DescribeLoadBalancerAttributes",
    "elasticloadbalancing:DescribeLoadBalancers",
    "elasticloadbalancing:DescribeRules",
    "elasticloadbalancing:DescribeTags",
    "elasticloadbalancing:DescribeTargetGroupAttributes",
    "elasticloadbalancing:DescribeTargetGroups",
    "elasticloadbalancing:SetWebAcl",
    "firehose:ListDeliveryStreams",
    "glue:CreateCrawler",
    "glue:CreateSecurityConfiguration",
    "glue:DeleteSecurityConfiguration",
    "glue:GetSecurityConfiguration",
    "kinesis:DisableEnhancedMonitoring",
    "kinesis:EnableEnhancedMonitoring",
    "kinesis:ListStreams",
    "kinesis:UpdateShardCount",
    "kinesis:UpdateStreamMode",
    "kms:CreateKey",
    "kms:ListAliases",
    "kms:ListKeys",
    "lambda:CreateEventSourceMapping",
    "lambda:ListEventSourceMappings",
    "logs:CreateLogDelivery",
    "logs:DeleteLogDelivery",
    "logs:DescribeLogGroups",
    "logs:DescribeResourcePolicies",
    "logs:GetLogDelivery",
    "logs:ListLogDeliveries",
    "logs:PutResourcePolicy",
    "logs:UpdateLogDelivery",
    "redshift-serverless:ListNamespaces",
    "redshift-serverless:ListWorkgroups",
    "redshift:DescribeClusterParameterGroups",
    "redshift:DescribeClusterSubnetGroups",
    "s3:ListAllMyBuckets",
    "secretsmanager:GetRandomPassword",
    "secretsmanager:ListSecrets",
    "sqs:ListQueues",
    "ssm:DescribeParameters",
})


# --- resource scope per service --------------------------------------------------------------

def service_resources(service: str, iam_names: str = "") -> list[Sub]:
    """ARN patterns covering `service`'s resources in this account (and region); for IAM,
    roles and policies whose names start with `iam_names`, and service-linked roles."""
    partition = "arn:${AWS::Partition}"
    if service == "iam":
        # IAM refuses a bare `:*` path ("IAM resource path must either be "*" or start with
        # user/, role/, ..."): the stacks create roles and policies (CloudFormation names them
        # after the stack, so they start with its name) and service-linked roles.
        if not iam_names:
            return [Sub(f"{partition}:iam::${{AWS::AccountId}}:role/*"),
                    Sub(f"{partition}:iam::${{AWS::AccountId}}:policy/*")]
        return [Sub(f"{partition}:iam::${{AWS::AccountId}}:role/{iam_names}*"),
                Sub(f"{partition}:iam::${{AWS::AccountId}}:role/aws-service-role/*"),
                Sub(f"{partition}:iam::${{AWS::AccountId}}:policy/{iam_names}*")]
    if service == "s3":
        # Bucket ARNs name no account; the statement adds an aws:ResourceAccount condition.
        return [Sub(f"{partition}:s3:::*")]
    if service == "route53":
        # Hosted zones are global and, for interface endpoints' private DNS, owned by AWS.
        return [Sub(f"{partition}:route53:::*")]
    if service == "apigateway":
        # API Gateway ARNs name no account.
        return [Sub(f"{partition}:apigateway:${{AWS::Region}}::*")]
    regional = Sub(f"{partition}:{service}:${{AWS::Region}}:${{AWS::AccountId}}:*")
    if service == "cloudwatch":
        # Dashboards are global: their ARNs name no region.
        return [regional, Sub(f"{partition}:cloudwatch::${{AWS::AccountId}}:*")]
    if service == "ec2":
        # Interface endpoints connect to endpoint services that AWS's own accounts own.
        return [regional,
                Sub(f"{partition}:ec2:${{AWS::Region}}:*:vpc-endpoint-service/*")]
    return [regional]


# --- the API ---------------------------------------------------------------------------------

def _known(resource_type: str) -> str:
    """The map's key for `resource_type` (custom resources share one entry)."""
    if resource_type.startswith("Custom::"):
        return "AWS::CloudFormation::CustomResource"
    if resource_type not in RESOURCE_ACTIONS:
        raise KeyError(f"no IAM actions known for resource type {resource_type!r}: add it to "
                       "mlops_cfn/permissions.py RESOURCE_ACTIONS")
    return resource_type


def actions_for(resource_types: Iterable[str]) -> list[str]:
    """Every IAM action needed to create, update and delete resources of these types."""
    found: set[str] = set()
    for resource_type in resource_types:
        key = _known(resource_type)
        found.update(RESOURCE_ACTIONS[key])
        if PASSES_ROLE_TO.get(key):
            found.add(PASS_ROLE)
    return sorted(found)


def passed_to_services(resource_types: Iterable[str]) -> list[str]:
    """The services `iam:PassRole` must reach for these types."""
    return sorted({service for t in resource_types
                   for service in PASSES_ROLE_TO.get(_known(t), ())})


def deployment_statements(resource_types: Iterable[str], iam_names: str = "") -> list[Statement]:
    """Statements allowing `actions_for(resource_types)`, scoped as the module docstring says.

    `iam_names`: the prefix of every role and policy the stacks create (the root stack's
    name, which CloudFormation's generated names start with), so that the deploying role can
    neither change nor pass any other role of the account. Empty when stack names are not
    known beforehand (Service Catalog names its stacks itself).
    """
    resource_types = list(resource_types)
    actions = [a for a in actions_for(resource_types) if a != PASS_ROLE]
    by_service: dict[str, list[str]] = {}
    unscoped = []
    for action in actions:
        if action in ACTIONS_WITHOUT_RESOURCE_SCOPE:
            unscoped.append(action)
        else:
            by_service.setdefault(action.split(":")[0], []).append(action)
    statements = []
    for service in sorted(by_service):
        statement = Statement(
            Sid="Manage" + "".join(part.capitalize() for part in service.split("-")),
            Effect=Allow,
            Action=[Action(*a.split(":")) for a in by_service[service]],
            Resource=service_resources(service, iam_names),
        )
        if service == "s3":
            statement.Condition = Condition(
                StringEquals("aws:ResourceAccount", Sub("${AWS::AccountId}")))
        statements.append(statement)
    if unscoped:
        statements.append(Statement(
            Sid="ActionsWithoutResourceScope",
            Effect=Allow,
            # AWS supports no resource-level permission for these (describe and list calls,
            # and creations whose resource has no ARN before it exists): `*` is the only
            # resource that matches them.
            Action=[Action(*a.split(":")) for a in unscoped],
            Resource=["*"],
        ))
    services = passed_to_services(resource_types)
    if services:
        statements.append(Statement(
            Sid="PassRolesToServices",
            Effect=Allow,
            Action=[Action("iam", "PassRole")],
            Resource=[Sub(f"arn:${{AWS::Partition}}:iam::${{AWS::AccountId}}:role/{iam_names}*")],
            Condition=Condition(StringEquals("iam:PassedToService", services)),
        ))
    return statements


def policy_size(statements: Sequence[Statement]) -> int:
    """Characters a document of `statements` counts against an IAM policy quota (an upper
    bound: CloudFormation functions count with their syntax, which is longer than the values
    they resolve to, except a region name longer than `${AWS::Region}`)."""
    document = PolicyDocument(Version=POLICY_VERSION, Statement=list(statements))
    return len(json.dumps(encode_to_dict(document), separators=(",", ":")))


def policy_documents(statements: Sequence[Statement],
                     limit: int = MANAGED_POLICY_LIMIT) -> list[PolicyDocument]:
    """`statements` packed in order into as few documents as fit `limit` each.

    A statement too large for one document on its own is split by its actions.
    """
    # Room for a long region name in every Sub, and the document's own braces.
    budget = limit - 200
    pieces: list[Statement] = []
    for statement in statements:
        pieces.extend(_split(statement, budget))
    documents: list[list[Statement]] = []
    for piece in pieces:
        if documents and policy_size(documents[-1] + [piece]) <= budget:
            documents[-1].append(piece)
        else:
            documents.append([piece])
    return [PolicyDocument(Version=POLICY_VERSION, Statement=d) for d in documents]


def _split(statement: Statement, budget: int) -> list[Statement]:
    if policy_size([statement]) <= budget:
        return [statement]
    actions = list(statement.Action)
    if len(actions) < 2:
        raise ValueError("a single-action statement exceeds the policy size limit")
    half = len(actions) // 2
    parts = []
    for index, chunk in enumerate((actions[:half], actions[half:]), start=1):
        props = dict(statement.properties)
        props["Action"] = chunk
        if "Sid" in props:
            props["Sid"] = f"{props['Sid']}{index}"
        parts.extend(_split(Statement(**props), budget))
    return parts


__all__ = [
    "ACTIONS_WITHOUT_RESOURCE_SCOPE", "MANAGED_POLICY_LIMIT", "PASSES_ROLE_TO",
    "RESOURCE_ACTIONS", "actions_for", "deployment_statements", "passed_to_services",
    "policy_documents", "policy_size", "service_resources",
]
